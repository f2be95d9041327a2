"""Piecewise-affine warping over a triangle mesh, as the built-in avatar moves its photo (avatar/default_avatar.py)."""
from __future__ import annotations

import cv2
import numpy as np

# How far each jaw point (of the 68) follows the chin when the mouth opens.
JAW_FOLLOW = np.zeros(68, np.float32)
JAW_FOLLOW[3:14] = (0.1, 0.35, 0.6, 0.8, 0.93, 1.0, 0.93, 0.8, 0.6, 0.35, 0.1)
UPPER_INNER, LOWER_INNER = [61, 62, 63], [67, 66, 65]      # facing pairs across the inner mouth
LOWER_LIP = [55, 56, 57, 58, 59, 65, 66, 67]               # what the jaw carries down


def border_points(size: int, per_side: int = 4) -> np.ndarray:
    edge = np.linspace(0, size - 1, per_side + 1)[:-1]
    last = float(size - 1)
    return np.concatenate([np.stack([edge, np.zeros_like(edge)], 1), np.stack([np.full_like(edge, last), edge], 1),
                           np.stack([last - edge, np.full_like(edge, last)], 1),
                           np.stack([np.zeros_like(edge), last - edge], 1)])


def signed_areas(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    a, b, c = points[triangles[:, 0]], points[triangles[:, 1]], points[triangles[:, 2]]
    return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])


def folds(src: np.ndarray, dst: np.ndarray, triangles: np.ndarray) -> bool:
    """Whether moving the mesh from src to dst turns any triangle over (a warp that would tear the image)."""
    after = signed_areas(dst, triangles)
    return bool(np.any((np.sign(after) * np.sign(signed_areas(src, triangles)) < 0) & (np.abs(after) > 1e-3)))


def piecewise_affine(image: np.ndarray, src: np.ndarray, dst: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Warp `image` so that each triangle of `src` points lands on the same triangle of `dst` points."""
    h, w = image.shape[:2]
    moved = np.any(np.abs(dst - src) > 1e-3, axis=1)
    active = triangles[np.any(moved[triangles], axis=1)]          # the rest map each pixel to itself
    if len(active) == 0:
        return image.copy()
    corners = np.concatenate([src[active].reshape(-1, 2), dst[active].reshape(-1, 2)])
    x0, y0 = np.clip(np.floor(corners.min(0)).astype(int), 0, [w - 1, h - 1])
    x1, y1 = np.clip(np.ceil(corners.max(0)).astype(int) + 1, 1, [w, h])
    ids = np.full((y1 - y0, x1 - x0), -1, np.int32)
    for k, tri in enumerate(active):
        cv2.fillConvexPoly(ids, np.round((dst[tri] - (x0, y0)) * 16).astype(np.int32), int(k), cv2.LINE_8, shift=4)
    # Per triangle the affine map from target to source: [x y 1] @ M = source (x, y).
    dst_h = np.concatenate([dst[active], np.ones((len(active), 3, 1))], axis=2)      # [T, 3, 3]
    dst_h[np.abs(np.linalg.det(dst_h)) < 1e-9] = np.eye(3)                           # slivers cover no pixel
    maps = np.linalg.solve(dst_h, src[active]).reshape(len(active), 6).astype(np.float32)
    maps = np.concatenate([maps, np.array([[1, 0, 0, 1, 0, 0]], np.float32)])        # -1: identity
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    m = maps[ids]                                                                     # [h, w, 6]
    map_x = xs * m[..., 0] + ys * m[..., 2] + m[..., 4]
    map_y = xs * m[..., 1] + ys * m[..., 3] + m[..., 5]
    out = image.copy()
    out[y0:y1, x0:x1] = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return out

