"""OpenFace-style comparison: mean and variance of pairwise squared L2 distances between unit-length embeddings.

OpenFace's own network (nn4.small2.v1) cannot be had here; the embedding is face_recognition's 128-d dlib
descriptor, normalised to unit length, so distances range 0 to 4 like OpenFace's. Pairs are all i < j.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.distance import pdist

from synth.metrics.images import MetricsError

EMBEDDING = "face_recognition's 128-d dlib embedding, unit-normalised (OpenFace's network is not available)"


def pairwise_spread(embeddings: np.ndarray) -> tuple[float, float]:
    """Mean and variance of squared L2 distances over all pairs of unit-normalised embeddings [N, D]."""
    e = np.asarray(embeddings, np.float64)
    if len(e) < 2:
        raise MetricsError(f"the OpenFace-style comparison needs at least 2 faces, got {len(e)}")
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    d = pdist(e, "sqeuclidean")
    return float(d.mean()), float(d.var())
