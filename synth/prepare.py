"""`synth prepare`: decode a subject's videos, keep one aligned face per frame, write a dataset.

Frames with no face, with several faces, or whose face is someone else are dropped and counted. "Someone
else" means an embedding farther than `max_distance` from the subject's reference: the element-wise median of
the embeddings of up to `reference_frames` single-face frames spread evenly over all videos, found in a first
pass before any frame is kept. A median of frames from the whole footage is robust to a minority of other
people, and unlike a running median it judges the first frames by the same standard as the last.

The default threshold, 0.5, is stricter than face_recognition's 0.6 because it is measured from a centre (the
median), where one person's faces lie closer than they lie to each other: every kept subject_A frame is within
0.42 of it, while on the stage clip 0.6 let in an audience member at 0.54 to 0.58.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import av
import numpy as np
from tqdm import tqdm

from avatar.align import SIZES, align_face
from avatar.detect import embedding_distance, find_faces, median_embedding
from synth.dataset import DatasetInfo, DatasetWriter, read_info

MAX_DISTANCE = 0.5      # from the subject's median embedding (see above)
COUNT_KEYS = ("frames", "kept", "no_face", "multi_face", "other_identity", "unreadable_files", "truncated_files")


class PrepareError(ValueError):
    """Nothing usable in the given videos, or bad options."""


@dataclass(frozen=True)
class PrepareOptions:
    """How `prepare` turns frames into aligned faces."""

    size: int = 64                     # output side in pixels: 64, 128 or 256
    every: int = 1                     # use every K-th frame
    max_distance: float = MAX_DISTANCE # embedding distance from the median beyond which a face is someone else
    upsample: int | None = None        # HOG upsampling; None: 1 below 720 px short side, else 0 (+1 retry if none)
    reference_frames: int = 32         # single-face frames whose median embedding is the subject
    shard_size: int = 256              # images per shard (the unit of resuming)

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise PrepareError(f"--size must be one of {SIZES}, got {self.size}")
        if self.every < 1:
            raise PrepareError(f"--every must be at least 1, got {self.every}")


@dataclass
class PrepareReport:
    """What `prepare` did: the dataset, the per-reason frame counts and the per-file errors."""

    info: DatasetInfo
    counts: dict[str, int]
    errors: list[str] = field(default_factory=list)
    already_complete: bool = False
    resumed: bool = False
    seconds: float = 0.0


def _frames(path: Path, every: int, start: int = 0) -> Iterator[tuple[int, np.ndarray | None]]:
    """(index, RGB frame) for every `every`-th frame from `start`; frames before `start` yield None (no conversion).

    Raises av.error.FFmpegError (a ValueError/OSError subclass) if the file cannot be opened or breaks mid-way.
    """
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise PrepareError(f"{path.name}: no video stream")
        for index, frame in enumerate(container.decode(video=0)):
            if index % every:
                continue
            if index < start:
                yield index, None
            else:
                yield index, np.ascontiguousarray(frame.to_ndarray(format="rgb24"))


def _frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return container.streams.video[0].frames if container.streams.video else 0


def find_reference(videos: list[Path], options: PrepareOptions, show_progress: bool = True) -> np.ndarray:
    """The subject's reference embedding: the median over evenly spread single-face frames of all videos."""
    counts = {}
    for path in videos:
        try:
            counts[path] = _frame_count(path) or 300   # unknown length: assume 10 s at 30 fps
        except (av.error.FFmpegError, OSError):
            pass                                     # unreadable files are reported by the main pass
    if not counts:
        raise PrepareError("cannot read any of the videos: " + ", ".join(p.name for p in videos))
    total = sum(counts.values())
    embeddings = []
    for path, n in counts.items():
        want = max(1, round(options.reference_frames * n / total))
        stride = max(options.every, n // want // options.every * options.every)
        try:
            for _, frame in tqdm(_frames(path, stride), desc=f"reference {path.name}", unit="frame", leave=False,
                                 disable=not show_progress):
                faces = find_faces(frame, options.upsample, embed_single_only=True)
                if len(faces) == 1:
                    embeddings.append(faces[0].embedding)
        except (av.error.FFmpegError, OSError):
            pass                                     # reported by the main pass, with its frame count
    if not embeddings:
        raise PrepareError("no frame with exactly one face found in the reference pass: "
                           "are these videos of one person's face?")
    return median_embedding(np.stack(embeddings))


def _fingerprint(videos: list[Path], options: PrepareOptions) -> dict:
    files = [{"path": str(p.resolve()), "bytes": p.stat().st_size if p.exists() else None} for p in videos]
    return {"videos": files, **{k: v for k, v in asdict(options).items() if k != "shard_size"}}


def prepare(videos: list[Path], out: Path, options: PrepareOptions = PrepareOptions(),
            show_progress: bool = True) -> PrepareReport:
    """Build (or resume, or confirm) the aligned-face dataset `out` from `videos`."""
    started = time.perf_counter()
    videos = [Path(v) for v in videos]
    if not videos:
        raise PrepareError("give at least one video")
    writer = DatasetWriter(out, options.size, _fingerprint(videos, options), options.shard_size)
    if writer.complete:
        info = read_info(out)
        return PrepareReport(info, dict(info.counts), list(writer.progress.get("errors", [])), already_complete=True)

    resumed = writer.progress is not None
    if resumed:
        state = writer.progress
        reference = np.array(state["reference"])
    else:
        reference = find_reference(videos, options, show_progress)
        state = {"video": 0, "frame": 0, "counts": dict.fromkeys(COUNT_KEYS, 0), "errors": [],
                 "reference": reference.tolist()}
        writer.commit(state)
    counts, errors = state["counts"], state["errors"]

    bar = tqdm(unit="frame", disable=not show_progress, desc="prepare", initial=counts["frames"])
    for v in range(state["video"], len(videos)):
        path = videos[v]
        start = state["frame"] if v == state["video"] else 0
        bar.set_postfix_str(path.name)
        decoded = start > 0
        try:
            for index, frame in _frames(path, options.every, start):
                decoded = True
                if frame is None:
                    continue
                _keep_frame(frame, index, path.name, reference, options, writer, counts)
                bar.update(1)
                if writer.pending >= options.shard_size:
                    writer.commit({**state, "video": v, "frame": index + 1, "counts": counts, "errors": errors})
        except (av.error.FFmpegError, OSError, PrepareError) as e:
            counts["truncated_files" if decoded else "unreadable_files"] += 1
            errors.append(f"{path.name}: {'decoding stopped early' if decoded else 'cannot read'} ({e})")
        writer.commit({**state, "video": v + 1, "frame": 0, "counts": counts, "errors": errors})
    bar.close()

    if counts["kept"] == 0:
        raise PrepareError("no aligned face was kept: " + _summary(counts) + "".join(f"\n  {e}" for e in errors))
    info = writer.finish([p.name for p in videos], counts, {**state, "video": len(videos), "frame": 0,
                                                            "counts": counts, "errors": errors})
    return PrepareReport(info, counts, errors, resumed=resumed, seconds=time.perf_counter() - started)


def _keep_frame(frame: np.ndarray, index: int, source: str, reference: np.ndarray, options: PrepareOptions,
                writer: DatasetWriter, counts: dict[str, int]) -> None:
    counts["frames"] += 1
    faces = find_faces(frame, options.upsample, embed_single_only=True)
    if not faces:
        counts["no_face"] += 1
        return
    if len(faces) > 1:
        counts["multi_face"] += 1
        return
    distance = float(embedding_distance(faces[0].embedding, reference))
    if distance > options.max_distance:
        counts["other_identity"] += 1
        return
    aligned = align_face(frame, faces[0].landmarks, options.size)
    writer.add(aligned.image, {"source": source, "frame": index, "distance": round(distance, 4),
                               "landmarks": np.round(aligned.landmarks, 2).tolist()})
    counts["kept"] += 1


def _summary(counts: dict[str, int]) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {counts[k]}" for k in COUNT_KEYS)


def format_report(report: PrepareReport) -> str:
    """Human-readable summary for the CLI."""
    head = "already complete" if report.already_complete else ("resumed and finished" if report.resumed else "done")
    rate = report.counts["frames"] / report.seconds if report.seconds else 0.0
    lines = [f"{head}: {report.info.count} aligned faces of {report.info.size} px",
             _summary(report.counts) + (f" ({rate:.1f} frames/s)" if rate else "")]
    lines += [f"error: {e}" for e in report.errors]
    return "\n".join(lines)
