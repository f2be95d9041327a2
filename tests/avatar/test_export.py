"""The offline dialogue export, reopened with PyAV and checked with real face detection."""
from pathlib import Path

import av
import cv2
import face_recognition
import numpy as np
import pytest

from avatar.dialogue import read_dialogue
from avatar.export import SAMPLES_PER_FRAME, ExportOptions, _Mp4Writer, draw_caption, export_dialogue
from avatar.provenance import TRAINED_ALGORITHMIC_MEDIA, verify_file
from avatar.render import I420Frames, to_i420
from avatar.types import FPS, SAMPLE_RATE

REPO = Path(__file__).resolve().parents[2]
PAPER_ANSWERS = [
    "Gregory said I respond to the current line, not with respect to the entire conversation. "
    "Does that count as gossip?",
    "Artificial Intelligence is the branch of engineering and science devoted to constructing machines that think.",
]


@pytest.fixture(scope="module", autouse=True)
def c2pa_dir(tmp_path_factory):
    """The exports here are signed by a local CA of their own, not the one under var/c2pa."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AVATAR_C2PA_CERT", "AVATAR_C2PA_KEY", "AVATAR_C2PA_CA"):
            mp.delenv(name, raising=False)
        mp.setenv("AVATAR_C2PA_DIR", str(tmp_path_factory.mktemp("c2pa")))
        yield


@pytest.fixture(scope="module")
def exported(tmp_path_factory, engine, responder):
    out = tmp_path_factory.mktemp("export") / "paper.mp4"
    lines = read_dialogue(REPO / "assets" / "dialogues" / "paper.txt")
    return export_dialogue(lines, responder, engine.performer(seed=1), out)


def _decode(path: Path):
    with av.open(str(path)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        info = {"vcodec": v.codec_context.name, "pix_fmt": v.codec_context.pix_fmt, "rate": v.average_rate,
                "acodec": a.codec_context.name, "arate": a.codec_context.sample_rate, "metadata": dict(c.metadata)}
        frames, n_audio = [], 0
        for frame in c.decode(v, a):
            if isinstance(frame, av.VideoFrame):
                frames.append(np.ascontiguousarray(frame.to_ndarray(format="rgb24")))
            else:
                n_audio += frame.samples
    return info, frames, n_audio


@pytest.fixture(scope="module")
def decoded(exported):
    return _decode(exported.video)


def test_codecs_rate_and_ai_metadata(decoded):
    info, frames, _ = decoded
    assert info["vcodec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert info["rate"] == FPS
    assert info["acodec"] == "aac" and info["arate"] == SAMPLE_RATE
    assert "AI-generated" in info["metadata"].get("comment", "")
    assert info["metadata"].get("ai_generated") == "true"


def test_video_lasts_as_long_as_the_audio(exported, decoded):
    _, frames, n_audio = decoded
    video_s, audio_s = len(frames) / FPS, n_audio / SAMPLE_RATE
    assert len(frames) == exported.n_frames
    assert abs(video_s - audio_s) <= 1 / FPS
    assert video_s > 10  # five spoken answers


def test_video_and_transcript_carry_trusted_c2pa_manifests(exported):
    for path in (exported.video, exported.transcript):
        result = verify_file(path)
        assert result.trusted and result.intact, (path, result.problems)
        assert result.digital_source_type == TRAINED_ALGORITHMIC_MEDIA
        assert result.avatar_name == "built-in avatar" and result.consent == ()
    assert verify_file(exported.transcript).manifest == exported.transcript.with_name("paper.vtt.c2pa")


def test_transcript_has_the_bots_answers(exported):
    vtt = exported.transcript.read_text()
    assert vtt.startswith("WEBVTT") and "AI-generated" in vtt
    for answer in PAPER_ANSWERS:
        assert answer in vtt
    speakers = [cue.speaker for cue in exported.cues]
    assert speakers == ["Human", "Avatar"] * 5
    assert all(a.end <= b.start + 1e-9 for a, b in zip(exported.cues, exported.cues[1:]))


def _mouth_opening(frame: np.ndarray) -> float | None:
    """Inner-lip gap over eye distance, measured by face_recognition (None when it finds no face)."""
    marks = face_recognition.face_landmarks(frame)
    if not marks:
        return None
    m = marks[0]  # the most confident face
    top, bottom = np.array(m["top_lip"], float), np.array(m["bottom_lip"], float)
    eyes = np.linalg.norm(np.mean(m["left_eye"], 0) - np.mean(m["right_eye"], 0))
    return float(np.linalg.norm(top[9] - bottom[9]) / eyes)  # inner lip points 62 and 66


def test_faces_found_and_mouth_moves_with_speech(exported, decoded):
    _, frames, _ = decoded
    speaking, pausing, missed, looked = [], [], 0, 0
    for cue in exported.cues:
        for i in range(int(cue.start * FPS) + 2, int(cue.end * FPS) - 2, 8):
            opening = _mouth_opening(frames[i])
            looked += 1
            if opening is None:
                missed += 1
            else:
                (speaking if cue.speaker == "Avatar" else pausing).append(opening)
    assert missed <= 0.05 * looked, f"no face in {missed} of {looked} sampled frames"
    assert len(speaking) > 20 and len(pausing) > 5
    assert np.mean(speaking) > np.mean(pausing) + 0.08, (np.mean(speaking), np.mean(pausing))


def test_burned_in_captions_change_the_bottom_of_the_frame():
    frame = np.full((512, 512, 3), 128, np.uint8)
    captioned = draw_caption(frame, "Avatar: Computers are very dumb. They only execute instructions given by humans.")
    diff = np.abs(captioned.astype(int) - frame).sum(axis=2)
    assert diff[:300].sum() == 0 and diff[380:].sum() > 0


def test_captions_option_and_failed_export_leaves_nothing(tmp_path, engine, responder):
    out = tmp_path / "one.mp4"
    result = export_dialogue(["What is AI?"], responder, engine.performer(), out, ExportOptions(captions=True))
    _, frames, _ = _decode(result.video)
    speaking = result.cues[1]
    middle = frames[int((speaking.start + speaking.end) / 2 * FPS)]
    plain = engine.performer().render(0)
    assert middle[440:480].mean() < 0.6 * plain[440:480].mean()  # the darkened caption band

    class Broken:
        def reply(self, text, session_id="default"):
            raise RuntimeError("bot went away")

    with pytest.raises(RuntimeError):
        export_dialogue(["hello"], Broken(), engine.performer(), tmp_path / "broken.mp4")
    # the video encoder fails on its own thread (x264 refuses the preset): the export stops with its reason
    with pytest.raises(RuntimeError, match="encoding failed"):
        export_dialogue(["hello", "What is AI?"], responder, engine.performer(), tmp_path / "bad.mp4",
                        ExportOptions(preset="no-such-preset"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.mp4", "one.vtt", "one.vtt.c2pa"]
    with pytest.raises(ValueError, match="mp4"):
        export_dialogue(["hello"], responder, engine.performer(), tmp_path / "x.avi")


def test_reused_video_frames_are_encoded_as_they_were_each_time(tmp_path):
    """The export writes one VideoFrame per driving frame many times over; each copy must show that frame."""
    yy, xx = np.mgrid[0:64, 0:64]
    sources = [np.dstack([(xx * 4 + 60 * k) % 256, (yy * 4) % 256, np.full_like(xx, 40 * k)]).astype(np.uint8)
               for k in range(4)]
    expected = [cv2.cvtColor(to_i420(s), cv2.COLOR_YUV2RGB_I420).astype(int) for s in sources]
    frames = I420Frames(wrap=lambda yuv: av.VideoFrame.from_ndarray(yuv, format="yuv420p"))
    order = np.random.default_rng(0).integers(0, 4, 60)
    writer = _Mp4Writer(tmp_path / "reuse.mp4", (64, 64), ExportOptions())
    for index in order:
        writer.write(frames.get(index, sources.__getitem__), np.zeros(SAMPLES_PER_FRAME, np.int16))
    writer.close()
    assert isinstance(frames.get(0, sources.__getitem__), av.VideoFrame)
    _, decoded, _ = _decode(tmp_path / "reuse.mp4")
    assert len(decoded) == len(order)
    for frame, index in zip(decoded, order):
        errors = [np.abs(frame.astype(int) - e).mean() for e in expected]
        assert int(np.argmin(errors)) == index and min(errors) < 6, (index, errors)
