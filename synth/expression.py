"""A landmark-based expression descriptor, and the two subset choices built on it: varied and monotone.
(`variety_descriptor` adds the face embedding, for choosing generated faces.)

The descriptor is the 68-point shape with position, in-plane rotation and scale taken out (eye midpoint at the
origin, eyes on the x axis, unit eye distance), flattened to 136 numbers. What remains is expression (mouth,
brows, eyelids, jaw drop) plus out-of-plane head pose, which is variety the face swap also wants.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist


def expression_descriptor(landmarks: np.ndarray) -> np.ndarray:
    """Pose-normalised shape of 68 landmarks [..., 68, 2] -> [..., 136]."""
    lm = np.asarray(landmarks, np.float64)
    if lm.shape[-2:] != (68, 2):
        raise ValueError(f"expected landmarks [..., 68, 2], got {list(lm.shape)}")
    eye_left, eye_right = lm[..., 36:42, :].mean(-2), lm[..., 42:48, :].mean(-2)
    centre = (eye_left + eye_right) / 2
    axis = eye_right - eye_left
    scale = np.linalg.norm(axis, axis=-1, keepdims=True)
    cos, sin = (axis / np.maximum(scale, 1e-9))[..., 0], (axis / np.maximum(scale, 1e-9))[..., 1]
    p = lm - centre[..., None, :]
    x = p[..., 0] * cos[..., None] + p[..., 1] * sin[..., None]      # rotate by -angle: eyes onto the x axis
    y = -p[..., 0] * sin[..., None] + p[..., 1] * cos[..., None]
    shape = np.stack([x, y], -1) / np.maximum(scale, 1e-9)[..., None, :]
    return shape.reshape(*lm.shape[:-2], 136)


def variety_descriptor(landmarks: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
    """Expression descriptor and unit face embedding side by side, [N, 68, 2] + [N, 128] -> [N, 264].

    Each half is scaled so that its root-mean-square distance from its own centroid is 1, so expression
    (the landmarks) and appearance (what face recognition sees: lighting, gaze, texture) weigh the same in
    farthest-point sampling.
    """
    expression = expression_descriptor(landmarks)
    unit = np.asarray(embeddings, np.float64)
    unit = unit / np.maximum(np.linalg.norm(unit, axis=-1, keepdims=True), 1e-12)
    halves = []
    for block in (expression, unit):
        spread = np.sqrt(np.mean(np.sum((block - block.mean(0)) ** 2, axis=1))) if len(block) else 0.0
        halves.append(block / max(spread, 1e-12))
    return np.concatenate(halves, axis=1)


def farthest_point_sampling(points: np.ndarray, k: int) -> np.ndarray:
    """Indices of k points [N, D] that spread out: start at the point farthest from the mean, then repeatedly
    add the point farthest from everything chosen so far (deterministic; k >= N returns all, in that order)."""
    points = np.asarray(points, np.float64)
    n = len(points)
    k = min(k, n)
    if k <= 0:
        return np.zeros(0, np.int64)
    chosen = np.empty(k, np.int64)
    chosen[0] = int(np.argmax(np.linalg.norm(points - points.mean(0), axis=1)))
    nearest = np.linalg.norm(points - points[chosen[0]], axis=1)
    for i in range(1, k):
        chosen[i] = int(np.argmax(nearest))
        nearest = np.minimum(nearest, np.linalg.norm(points - points[chosen[i]], axis=1))
    return chosen


def monotone_subset(points: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k points [N, D] nearest the medoid: the most typical expression and those closest to it,
    like the paper's burst of photos with one expression."""
    points = np.asarray(points, np.float64)
    dist = cdist(points, points)
    medoid = int(np.argmin(dist.sum(1)))
    return np.argsort(dist[medoid], kind="stable")[:min(k, len(points))]
