"""Whole driving clips through a swap run: `apply` (an mp4 to look at) and `bake` (the avatar's frames, once).

Frames without exactly one face cannot be swapped; they are never shown with the driving person's face:
`apply` holds the nearest swapped frame in their place (timing and audio stay intact) and `bake` leaves them
out of the clip the motion planner chooses from.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from avatar.driving import DrivingClip
from avatar.face import FACE_SIZE
from avatar.mp4 import add_h264, open_mp4
from avatar.render import draw_label
from avatar.swap.data import VideoScan, cached_scan, check_usable, read_frames
from avatar.swap.merge import MergeOptions, Predictor, merge_clip


CHUNK = 256       # frames merged at once


@dataclass(frozen=True)
class SwappedClip:
    """A driving clip's frames with the subject's face, and which of them were swapped."""

    frames: list[np.ndarray]   # uint8 [H, W, 3] per usable frame, in order
    indices: np.ndarray        # int64 [M] the driving frame each came from
    scan: VideoScan


def _runs(usable: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of consecutive usable frames."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], usable.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def swap_clip(video: Path, predictor: Predictor, scan_cache: Path, max_frames: int | None = None,
              options: MergeOptions = MergeOptions(), size: int = FACE_SIZE, progress: bool = True,
              reuse: tuple[Path, ...] = ()) -> SwappedClip:
    """Every usable frame of `video` with the subject's face, merged shot by shot (temporal smoothing inside a
    run of consecutive usable frames only). The face scan is kept in `scan_cache` (or taken from `reuse`)."""
    scan = cached_scan(video, scan_cache, max_frames, progress, also=reuse)
    check_usable(scan, video)
    frames = list(read_frames(video, max_frames))
    runs = _runs(scan.usable[: len(frames)])
    pad = int(np.ceil(4 * max(options.landmark_sigma, options.colour_sigma))) + 1   # gaussian_filter1d's reach
    out: list[np.ndarray] = []
    bar = tqdm(total=sum(b - a for a, b in runs), desc="swap frames", unit="frame", disable=not progress)
    for a, b in runs:
        for start in range(a, b, CHUNK):     # the predictor's work in chunks that overlap by the smoothing's reach
            stop = min(b, start + CHUNK)
            lo, hi = max(a, start - pad), min(b, stop + pad)
            merged = merge_clip(frames[lo:hi], scan.landmarks[lo:hi], predictor, size, options)
            out.extend(merged[start - lo: stop - lo])
            bar.update(stop - start)
    bar.close()
    indices = np.concatenate([np.arange(a, b) for a, b in runs]).astype(np.int64)
    return SwappedClip(out, indices, scan)


def bake_clip(video: Path, predictor: Predictor, scan_cache: Path, max_frames: int | None = None,
              options: MergeOptions = MergeOptions(), progress: bool = True,
              reuse: tuple[Path, ...] = ()) -> DrivingClip:
    """The avatar's driving clip with the subject's face in every frame, rendered once ahead of time: the
    renderer then blends these frames without torch (its identity face model leaves them as they are)."""
    swapped = swap_clip(video, predictor, scan_cache, max_frames, options, progress=progress, reuse=reuse)
    landmarks = swapped.scan.landmarks[swapped.indices]
    return DrivingClip.from_landmarks(np.stack(swapped.frames), landmarks, source=f"swapped:{video}")


def held_frames(swapped: SwappedClip, n_frames: int) -> list[np.ndarray]:
    """One frame per driving frame: swapped where usable, else the nearest swapped frame."""
    positions = np.searchsorted(swapped.indices, np.arange(n_frames))
    out = []
    for i, p in enumerate(positions):
        if p < len(swapped.indices) and swapped.indices[p] == i:
            out.append(swapped.frames[p])
            continue
        before, after = max(p - 1, 0), min(p, len(swapped.indices) - 1)
        nearest = before if abs(swapped.indices[before] - i) <= abs(swapped.indices[after] - i) else after
        out.append(swapped.frames[nearest])
    return out


def write_swapped_video(video: Path, swapped: SwappedClip, out: Path, side_by_side: bool = False,
                        max_frames: int | None = None, crf: int = 20) -> int:
    """An H.264 + AAC mp4 of the swapped clip with the source's audio, labelled as AI-generated; returns the
    number of frames. With `side_by_side` the original frame is on the left."""
    out = Path(out)
    if out.suffix.lower() != ".mp4":
        raise ValueError(f"output must be an .mp4 file, got {out.name!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    originals = list(read_frames(video, max_frames))
    frames = held_frames(swapped, len(originals))
    tmp = out.with_name(f".{out.stem}.partial.mp4")
    rate = Fraction(swapped.scan.fps).limit_denominator(1001)
    try:
        with av.open(str(video)) as source, open_mp4(tmp, "AI-generated face swap") as sink:
            h, w = originals[0].shape[:2]
            stream = add_h264(sink, rate, (2 * w if side_by_side else w) // 2 * 2, h // 2 * 2, crf)
            audio_in = source.streams.audio[0] if source.streams.audio else None
            audio_out = sink.add_stream("aac", rate=audio_in.rate) if audio_in is not None else None
            if audio_out is not None:
                audio_out.layout = audio_in.layout.name
            for k, (original, frame) in enumerate(zip(originals, frames)):
                picture = draw_label(np.concatenate([original, frame], axis=1) if side_by_side else frame)
                vf = av.VideoFrame.from_ndarray(picture[: stream.height, : stream.width], format="rgb24")
                vf.pts = k
                sink.mux(stream.encode(vf))
            sink.mux(stream.encode(None))
            if audio_out is not None:
                _copy_audio(source, audio_in, audio_out, sink, len(originals) / float(rate))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return len(frames)


def _copy_audio(source, audio_in, audio_out, sink, seconds: float) -> None:
    """Re-encode the source's audio into the sink over the video's time span (its first frame at 0 s, as the
    rewritten video's), with timestamps counted in samples so that nothing drifts."""
    video = source.streams.video[0]
    start = float(video.start_time * video.time_base) if video.start_time is not None else 0.0
    source.seek(0)
    written = 0
    for frame in source.decode(audio_in):
        t = (frame.time or 0.0) - start
        if t + frame.samples / frame.sample_rate <= 0:
            continue
        if t >= seconds:
            break
        frame.pts = written
        frame.time_base = Fraction(1, frame.sample_rate)
        written += frame.samples
        sink.mux(audio_out.encode(frame))
    sink.mux(audio_out.encode(None))
