"""prepare: alignment to the template, frame counts on real footage, broken files, resume and idempotency."""
from __future__ import annotations

import av
import numpy as np
import pytest

import synth.prepare as prep
from avatar.align import align_face, align_transform
from synth.cli import main as synth_main
from synth.dataset import load_images, load_metadata, read_info
from synth.prepare import COUNT_KEYS, PrepareError, PrepareOptions, prepare

from footage import MULTI_EVERY, SUBJECT, SUBJECT_EVERY, need


def _face_landmarks(eye_gap: float = 60.0, mouth_drop: float = 65.0) -> np.ndarray:
    """A 68-point shape whose eyes sit level `eye_gap` apart and whose mouth centre is `mouth_drop` below them."""
    lm = np.random.default_rng(1).uniform(-40, 40, (68, 2)) + [200, 200]
    lm[36:42] = [200 - eye_gap / 2, 180] + np.random.default_rng(2).normal(0, 3, (6, 2)) * [1, 0]
    lm[42:48] = [200 + eye_gap / 2, 180] + np.random.default_rng(3).normal(0, 3, (6, 2)) * [1, 0]
    lm[36:42] -= lm[36:42].mean(0) - [200 - eye_gap / 2, 180]
    lm[42:48] -= lm[42:48].mean(0) - [200 + eye_gap / 2, 180]
    lm[48], lm[54] = [180, 180 + mouth_drop], [220, 180 + mouth_drop]
    return lm


def _similarity(points: np.ndarray, angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return points @ (scale * np.array([[c, s], [-s, c]])) + shift


def _aligned_points(lm: np.ndarray, size: int) -> np.ndarray:
    m = align_transform(lm, size)
    return lm @ m[:, :2].T + m[:, 2]


def test_template_puts_eyes_level_a_quarter_apart_and_mouth_centred():
    out = _aligned_points(_face_landmarks(), 128)
    eye_l, eye_r, mouth = out[36:42].mean(0), out[42:48].mean(0), (out[48] + out[54]) / 2
    assert eye_l[1] == pytest.approx(eye_r[1], abs=1e-6)
    assert eye_r[0] - eye_l[0] == pytest.approx(128 / 4, abs=1e-6)
    assert mouth[0] == pytest.approx(64, abs=1e-6)
    assert 0.4 * 128 < eye_l[1] < 0.5 * 128 < mouth[1] < 0.8 * 128


@pytest.mark.parametrize("angle,scale,shift", [(0.3, 1.7, (40, -20)), (-0.5, 0.6, (300, 90))])
def test_alignment_undoes_any_similarity_transform(angle, scale, shift):
    lm = _face_landmarks()
    moved = _similarity(lm, angle, scale, shift)
    np.testing.assert_allclose(_aligned_points(moved, 64), _aligned_points(lm, 64), atol=1e-3)


def test_align_face_crops_to_size_and_maps_landmarks():
    image = np.zeros((400, 400, 3), np.uint8)
    image[170:190, 160:240] = 255                           # a bright band through both eyes
    aligned = align_face(image, _face_landmarks(), 64)
    assert aligned.image.shape == (64, 64, 3) and aligned.image.dtype == np.uint8
    eye_row = int(round(aligned.landmarks[36:48, 1].mean()))
    assert aligned.image[eye_row, 24:40].mean() > 200 > aligned.image[60:64].mean()


def test_subject_a_gives_an_aligned_face_for_95_percent_of_frames(subject_prepared):
    subject_report, subject_dataset = subject_prepared
    counts = subject_report.counts
    assert counts["frames"] == len(range(0, 1819, SUBJECT_EVERY))     # every 6th frame of 1,819
    assert counts["kept"] >= 0.95 * counts["frames"]
    assert counts["kept"] == counts["frames"] - counts["no_face"] - counts["multi_face"] - counts["other_identity"]
    images, meta = load_images(subject_dataset), load_metadata(subject_dataset)
    assert images.shape == (counts["kept"], 64, 64, 3) and len(meta) == len(images)
    assert meta[0]["source"] == SUBJECT.name and meta[1]["frame"] - meta[0]["frame"] == SUBJECT_EVERY
    lm = np.array([m["landmarks"] for m in meta])                       # [N, 68, 2] aligned pixels
    eyes_y = lm[:, 36:48, 1].mean(1)
    assert np.abs(eyes_y - 0.47 * 64).max() < 3                         # every face on the one template


def test_stage_clip_with_several_people_is_counted_and_filtered(multi_prepared):
    """On this clip the HOG detector finds the performer and, late on, one audience member; the other audience
    faces are too dark and turned (even two upsample steps found two faces in only 2 of 92 frames, every third one)."""
    multi_report, multi_dataset = multi_prepared
    counts = multi_report.counts
    assert set(COUNT_KEYS) <= set(counts)
    assert counts["frames"] == len(range(0, 275, MULTI_EVERY))
    assert counts["no_face"] > 0 and counts["other_identity"] > 0 and counts["kept"] > 0
    assert counts["kept"] + counts["no_face"] + counts["multi_face"] + counts["other_identity"] == counts["frames"]
    assert multi_report.errors == []
    frames = [m["frame"] for m in load_metadata(multi_dataset)]
    assert max(frames) < 237                  # the audience member (frames 237 on) is someone else


@pytest.fixture(scope="module")
def subject_frames() -> list[np.ndarray]:
    """The first 48 frames of subject_A, RGB."""
    with av.open(str(need(SUBJECT))) as src:
        return [f.to_ndarray(format="rgb24") for _, f in zip(range(48), src.decode(video=0))]


def _write_clip(path, frames, fps=10):
    with av.open(str(path), "w") as dst:
        stream = dst.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt, stream.options = "yuv420p", {"qscale": "2"}
        for frame in frames:
            dst.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        dst.mux(stream.encode())


def test_frames_with_two_faces_or_none_are_dropped_and_counted(subject_frames, tmp_path, capsys):
    one = subject_frames[0]
    two = np.concatenate([subject_frames[1], subject_frames[2]], 1)          # two faces side by side
    pad = np.zeros_like(one)
    clip = [np.concatenate([one, pad], 1), two, np.concatenate([pad, subject_frames[3]], 1), two, np.zeros_like(two)]
    _write_clip(tmp_path / "two.mp4", clip)
    report = prepare([tmp_path / "two.mp4"], tmp_path / "ds", PrepareOptions(reference_frames=5), show_progress=False)
    counts = {k: report.counts[k] for k in ("frames", "kept", "multi_face", "no_face", "other_identity")}
    assert counts == {"frames": 5, "kept": 2, "multi_face": 2, "no_face": 1, "other_identity": 0}

    # The same through the CLI, which prints each count; other options on the same folder are refused.
    assert synth_main(["prepare", str(tmp_path / "two.mp4"), "--out", str(tmp_path / "cli"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "done: 2 aligned faces of 64 px" in out
    assert "frames 5, kept 2, no face 1, multi face 2, other identity 0" in out
    assert synth_main(["prepare", str(tmp_path / "two.mp4"), "--out", str(tmp_path / "cli"), "--every", "2",
                       "--quiet"]) == 2
    assert "made with other options (every: 1 there, 2 here)" in capsys.readouterr().err


@pytest.fixture(scope="module")
def broken_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("broken")
    data = need(SUBJECT).read_bytes()
    truncated = folder / "truncated.mp4"
    truncated.write_bytes(data[:len(data) // 2])        # the header survives; decoding fails part-way
    garbage = folder / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, np.uint8).tobytes())
    return truncated, garbage


def test_truncated_and_corrupt_files_are_counted_with_clear_errors(broken_files, tmp_path):
    truncated, garbage = broken_files
    report = prepare([garbage, truncated], tmp_path / "ds",
                     PrepareOptions(every=60, reference_frames=4), show_progress=False)
    assert report.counts["unreadable_files"] == 1 and report.counts["truncated_files"] == 1
    assert report.counts["kept"] >= 5                    # the frames before the break are still used
    assert any(e.startswith("garbage.mp4: cannot read") for e in report.errors)
    assert any(e.startswith("truncated.mp4: decoding stopped early") for e in report.errors)
    assert read_info(tmp_path / "ds").counts == report.counts


def test_only_unreadable_files_raise_a_clear_error(broken_files, tmp_path):
    _, garbage = broken_files
    with pytest.raises(PrepareError, match="cannot read any of the videos: garbage.mp4"):
        prepare([garbage], tmp_path / "ds", show_progress=False)


def test_bad_options_are_refused():
    with pytest.raises(PrepareError, match="--size"):
        PrepareOptions(size=100)
    with pytest.raises(PrepareError, match="--every"):
        PrepareOptions(every=0)


@pytest.fixture(scope="module")
def short_clip(subject_frames, tmp_path_factory):
    """The first 48 frames of subject_A re-encoded (kept in a temporary folder, never in the repository)."""
    path = tmp_path_factory.mktemp("clip") / "short.mp4"
    _write_clip(path, subject_frames[:48], fps=30)
    return path


def test_interrupted_run_resumes_to_the_same_dataset_and_reruns_are_idempotent(short_clip, tmp_path, monkeypatch):
    options = PrepareOptions(every=4, reference_frames=3, shard_size=3)
    full = prepare([short_clip], tmp_path / "full", options, show_progress=False)
    assert full.counts["frames"] == 12 and full.counts["kept"] >= 10

    real_keep, calls = prep._keep_frame, []

    def keep_then_crash(*args, **kwargs):
        calls.append(1)
        if len(calls) == 8:
            raise KeyboardInterrupt
        real_keep(*args, **kwargs)

    monkeypatch.setattr(prep, "_keep_frame", keep_then_crash)
    with pytest.raises(KeyboardInterrupt):
        prepare([short_clip], tmp_path / "resumed", options, show_progress=False)
    assert not (tmp_path / "resumed" / "dataset.json").exists()
    monkeypatch.setattr(prep, "_keep_frame", real_keep)

    resumed = prepare([short_clip], tmp_path / "resumed", options, show_progress=False)
    assert resumed.resumed and resumed.counts == full.counts
    np.testing.assert_array_equal(load_images(tmp_path / "resumed"), load_images(tmp_path / "full"))
    assert load_metadata(tmp_path / "resumed") == load_metadata(tmp_path / "full")

    again = prepare([short_clip], tmp_path / "resumed", options, show_progress=False)
    assert again.already_complete and again.counts == full.counts
