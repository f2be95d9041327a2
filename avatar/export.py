"""Offline dialogue video: each human line is answered by the bot and spoken by the avatar, into one mp4.

H.264 (yuv420p) + AAC at 25 fps, with a WebVTT transcript beside it. Every utterance is padded with silence
to a whole number of video frames, so the audio is sample-accurate and the video lasts exactly as long.
Both files are marked as AI-generated three ways: a visible label, metadata tags and C2PA manifests.
"""
from __future__ import annotations

import os
import queue
import textwrap
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np
from tqdm import tqdm

from avatar.mp4 import AI_NOTICE, add_h264, open_mp4
from avatar.pipeline import Performer
from avatar.provenance import ContentInfo, sign_file
from avatar.render import I420Frames, to_i420
from avatar.types import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, Responder



@dataclass(frozen=True)
class ExportOptions:
    captions: bool = False        # burn the transcript into the frames
    pause: float = 0.8            # seconds of listening before each answer (and at the end)
    # x264. bench/export_speed.py --psnr, paper dialogue, built-in avatar (2026-12-01): ultrafast/crf 26 wrote
    # 26x real time at 372 kbit/s and 46.2 dB PSNR against a lossless export; veryfast/crf 20 (before) 12.6x at
    # 166 kbit/s and 41.0 dB. Encoding is most of an export's time: ultrafast halves it for twice the bytes,
    # and the encoders' own threads (_Mp4Writer) doubled the speed again (15.3x -> 31.1x, medians, same day).
    crf: int = 26
    preset: str = "ultrafast"
    provenance: ContentInfo = ContentInfo(title="AI-generated avatar dialogue")   # what the C2PA manifests say


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    speaker: str
    text: str


@dataclass
class ExportResult:
    video: Path
    transcript: Path
    duration: float
    n_frames: int
    cues: list[Cue] = field(default_factory=list)


class _Mp4Writer:
    """Writes yuv420p frames and mono int16 audio, one video frame's worth of samples at a time.

    Encoding is most of an export's time, so H.264 and AAC each run on a thread of their own while the caller
    renders and speaks; x264 itself is given one thread (at 512x512 its own threads cost more than they
    bring). Muxing is serialised by a lock. bench/export_speed.py measures it.
    """

    QUEUE = 32                       # frames waiting for an encoder at most

    def __init__(self, path: Path, size: tuple[int, int], options: ExportOptions) -> None:
        self.container = open_mp4(path, "AI-generated avatar dialogue")
        self.video = add_h264(self.container, FPS, *size, options.crf, options.preset, threads=1)
        self.audio = self.container.add_stream("aac", rate=SAMPLE_RATE)
        self.audio.layout = "mono"
        self.audio.options = {"aac_coder": "fast"}   # FFmpeg's default two-loop search costs twice the time
        self.n_frames = 0
        self._mux_lock = threading.Lock()
        self._errors: list[BaseException] = []
        self._aborting = False
        self._queues = {stream: queue.Queue(self.QUEUE) for stream in (self.video, self.audio)}
        self._threads = [threading.Thread(target=self._encode, args=(stream, frames), daemon=True,
                                          name=f"export-{stream.codec_context.name}")
                         for stream, frames in self._queues.items()]
        for thread in self._threads:
            thread.start()

    def _encode(self, stream: av.stream.Stream, frames: queue.Queue) -> None:
        """Encoder thread: (frame, pts) from the queue until None, then the flush; an error is kept for the
        caller, and the thread then only takes frames off the queue until its None."""
        stopped = False
        try:
            while (item := frames.get()) is not None:
                if self._aborting:
                    continue
                frame, pts = item
                frame.pts = pts          # a reused VideoFrame's pts is only ever set here, just before encoding
                packets = stream.encode(frame)
                with self._mux_lock:
                    self.container.mux(packets)
            stopped = True
            if not self._aborting:
                packets = stream.encode(None)
                with self._mux_lock:
                    self.container.mux(packets)
        except BaseException as error:   # noqa: BLE001 - raised in the caller's next write() or close()
            self._errors.append(error)
            while not stopped and frames.get() is not None:
                pass

    def _check(self) -> None:
        if self._errors:
            raise RuntimeError(f"encoding failed: {self._errors[0]}") from self._errors[0]

    def write(self, frame: np.ndarray | av.VideoFrame, samples: np.ndarray) -> None:
        """One video frame (planar YUV 4:2:0: uint8 [H * 3 / 2, W] or a yuv420p VideoFrame, which x264 copies
        while encoding, so one VideoFrame may be written many times) and its SAMPLES_PER_FRAME audio samples."""
        self._check()
        vf = frame if isinstance(frame, av.VideoFrame) else av.VideoFrame.from_ndarray(frame, format="yuv420p")
        self._queues[self.video].put((vf, self.n_frames))
        af = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        af.sample_rate = SAMPLE_RATE
        self._queues[self.audio].put((af, self.n_frames * SAMPLES_PER_FRAME))
        self.n_frames += 1

    def _stop(self) -> None:
        for frames in self._queues.values():
            frames.put(None)
        for thread in self._threads:
            thread.join()

    def close(self) -> None:
        """Flush the encoders and finish the file."""
        self._stop()
        self._check()
        self.container.close()

    def abort(self) -> None:
        """Stop the encoder threads, dropping what they have not encoded, and close the file as it is (the
        caller deletes it)."""
        self._aborting = True
        try:
            if any(thread.is_alive() for thread in self._threads):
                self._stop()
        finally:
            self.container.close()


def draw_caption(frame: np.ndarray, text: str) -> np.ndarray:
    """Burn `text` into the bottom of the frame, wrapped, white on a dark band."""
    out = frame.copy()
    h, w = out.shape[:2]
    scale = w / 900
    thickness = max(1, round(scale * 2))
    char_w = cv2.getTextSize("M", cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][0]
    lines = textwrap.wrap(text, max(10, int(w * 0.92 / char_w * 1.25)))[-3:]
    line_h = int(34 * scale) + 6
    top = h - line_h * len(lines) - int(40 * scale)
    band = out[top - 6:h - int(40 * scale) + 4]
    band[:] = (band * 0.35).astype(np.uint8)
    for i, line in enumerate(lines):
        y = top + line_h * (i + 1) - 8
        cv2.putText(out, line, (int(w * 0.04), y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness,
                    cv2.LINE_AA)
    return out


def write_webvtt(path: Path, cues: list[Cue]) -> None:
    def stamp(t: float) -> str:
        ms = round(t * 1000)
        return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"

    parts = ["WEBVTT", "", "NOTE " + AI_NOTICE, ""]
    for i, cue in enumerate(cues, 1):
        parts += [str(i), f"{stamp(cue.start)} --> {stamp(cue.end)}", f"<v {cue.speaker}>{cue.text}", ""]
    _atomic_write_text(path, "\n".join(parts))


def export_dialogue(lines: list[str], responder: Responder, performer: Performer, out: Path,
                    options: ExportOptions = ExportOptions()) -> ExportResult:
    """Answer every line with the bot, speak the answers, and write `out` (.mp4) and `out.vtt` beside it, both
    signed with C2PA manifests (the transcript's in `out.vtt.c2pa`)."""
    out = Path(out)
    if out.suffix.lower() != ".mp4":
        raise ValueError(f"output must be an .mp4 file, got {out.name!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    session = f"export-{uuid.uuid4().hex[:8]}"
    pause_frames = max(1, round(options.pause * FPS))
    silence = np.zeros(SAMPLES_PER_FRAME, np.int16)
    tmp = out.with_name(f".{out.stem}.partial.mp4")
    cues: list[Cue] = []
    caption = ""

    # Uncaptioned frames repeat a lot: one VideoFrame per driving frame, written as often as it is shown.
    converted = I420Frames(wrap=lambda yuv: av.VideoFrame.from_ndarray(yuv, format="yuv420p"))

    def emit(indices: np.ndarray, audio: np.ndarray | None) -> None:
        for k, index in enumerate(indices):
            if options.captions and caption:
                frame = to_i420(draw_caption(performer.render(index), caption))
            else:
                frame = converted.get(index, performer.render)
            chunk = silence if audio is None else audio[k * SAMPLES_PER_FRAME:(k + 1) * SAMPLES_PER_FRAME]
            writer.write(frame, chunk)

    writer = _Mp4Writer(tmp, performer.engine.frame_size, options)
    try:
        for line in tqdm(lines, desc="export", unit="line"):
            start = writer.n_frames / FPS
            cues.append(Cue(start, start + pause_frames / FPS, "Human", line))
            caption = f"Human: {line}"
            emit(performer.idle(pause_frames), None)

            reply = responder.reply(line, session_id=session)
            utterance = performer.prepare(reply)
            n = utterance.n_frames
            audio = np.zeros(n * SAMPLES_PER_FRAME, np.int16)
            samples = utterance.speech.audio.samples[: len(audio)]
            audio[: len(samples)] = samples
            start = writer.n_frames / FPS
            cues.append(Cue(start, start + n / FPS, "Avatar", reply))
            caption = f"Avatar: {reply}"
            emit(utterance.frame_indices, audio)
        caption = ""
        emit(performer.idle(pause_frames), None)
        writer.close()
    except BaseException:
        try:
            writer.abort()
        finally:
            tmp.unlink(missing_ok=True)
        raise
    try:
        sign_file(tmp, options.provenance, dest=out)      # `out` appears signed or not at all
    finally:
        tmp.unlink(missing_ok=True)
    transcript = out.with_suffix(".vtt")
    write_webvtt(transcript, cues)
    sign_file(transcript, options.provenance)           # the manifest goes into the sidecar out.vtt.c2pa
    return ExportResult(out, transcript, writer.n_frames / FPS, writer.n_frames, cues)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
