"""The paper's Table 1 from real data: the OpenFace-style spread of a monotone and a varied subset.

Both subsets come from the real set's faces and have the same size (the paper used 100 of each). Monotone: the
faces whose expression descriptor is nearest the most typical one (a burst with one expression). Varied:
farthest-point sampling on the same descriptor. The monotone spread should come out below the varied one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synth.expression import expression_descriptor, farthest_point_sampling, monotone_subset
from synth.metrics.images import MetricsError
from synth.metrics.openface import pairwise_spread
from synth.metrics.recognition import FaceScan

PAPER_TABLE1 = {"monotone": (0.019, 0.000), "varied": (0.234, 0.019)}


@dataclass(frozen=True)
class SpreadRow:
    name: str
    count: int
    mean: float
    var: float


def calibrate(real: FaceScan, count: int = 100) -> tuple[SpreadRow, SpreadRow]:
    """Monotone and varied rows of Table 1 from a scanned real set (`count` faces each, fewer if the set is small)."""
    faces = np.flatnonzero(real.found)
    k = min(count, len(faces) // 2)
    if k < 2:
        raise MetricsError(f"calibration needs at least 4 real faces, found {len(faces)}")
    descriptors = expression_descriptor(real.landmarks[faces])
    rows = []
    for name, pick in (("monotone", monotone_subset(descriptors, k)), ("varied", farthest_point_sampling(descriptors, k))):
        mean, var = pairwise_spread(real.embeddings[faces[pick]])
        rows.append(SpreadRow(name, k, mean, var))
    return rows[0], rows[1]


def table1_markdown(monotone: SpreadRow, varied: SpreadRow) -> str:
    lines = ["| Dataset | Faces | Mean | Variance | Paper mean | Paper variance |", "|---|---|---|---|---|---|"]
    for row in (monotone, varied):
        pm, pv = PAPER_TABLE1[row.name]
        lines.append(f"| {row.name.capitalize()} faces | {row.count} | {row.mean:.3f} | {row.var:.3f} | {pm:.3f} | {pv:.3f} |")
    return "\n".join(lines)
