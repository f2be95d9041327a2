"""Training pairs for the swap model: DFL-style random grid warp of the input over a small random similarity.

The target is the face under a random rotation, scale and shift (the same for input and target); the input
is the target further bent by a smooth random warp, so the network must learn the face, not copy pixels.
The warp moves only interior grid points and by at most half a cell, so the face stays inside the crop.
No horizontal flips: faces are not symmetric, and a flipped subject is another face.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from avatar.align import apply_affine
from avatar.face import face_mask

ROTATION = 10.0     # degrees, either way
SCALE = 0.05        # relative, either way
SHIFT = 0.05        # fraction of the side, either way
WARP_SIGMA = 0.24   # grid-point displacement, in cells (DFL's value)


@dataclass(frozen=True)
class Sample:
    """One augmented face: network input, target, and the target's masks."""

    input: np.ndarray        # uint8 [S, S, 3]
    target: np.ndarray       # uint8 [S, S, 3]
    mask: np.ndarray         # float32 [S, S]: the landmark hull of the face
    eyes_mouth: np.ndarray   # float32 [S, S]: eyes and mouth, for their extra loss weight


def random_similarity(size: int, rng: np.random.Generator) -> np.ndarray:
    """A 2x3 rotation/scale/shift about the centre of a size x size crop."""
    angle = rng.uniform(-ROTATION, ROTATION)
    scale = 1.0 + rng.uniform(-SCALE, SCALE)
    matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale)
    matrix[:, 2] += rng.uniform(-SHIFT, SHIFT, 2) * size
    return matrix


def random_warp_maps(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps (x, y) float32 [S, S] of a smooth random warp that leaves the crop's border in place."""
    cells = int(rng.choice([2, 4, 8]))             # grid cells across the crop
    cell = size / cells
    grid = np.linspace(0, size - 1, cells + 1, dtype=np.float32)
    xs = np.tile(grid, (cells + 1, 1))
    ys = xs.T.copy()
    shape = (cells - 1, cells - 1)
    limit = cell / 2
    xs[1:-1, 1:-1] += np.clip(rng.normal(0, cell * WARP_SIGMA, shape), -limit, limit)
    ys[1:-1, 1:-1] += np.clip(rng.normal(0, cell * WARP_SIGMA, shape), -limit, limit)
    spread = _corner_aligned_weights(cells + 1, size)          # grid points -> pixels, corners on corners
    map_x = (spread @ xs @ spread.T).astype(np.float32)
    map_y = (spread @ ys @ spread.T).astype(np.float32)
    return map_x, map_y


def _corner_aligned_weights(points: int, size: int) -> np.ndarray:
    """[size, points] linear interpolation weights from `points` evenly spaced samples to `size` pixels, the
    first and last sample landing exactly on the first and last pixel (cv2.resize would shift them)."""
    t = np.linspace(0, points - 1, size)
    lo = np.minimum(np.floor(t).astype(int), points - 2)
    frac = t - lo
    weights = np.zeros((size, points))
    weights[np.arange(size), lo] = 1 - frac
    weights[np.arange(size), lo + 1] = frac
    return weights


def eyes_mouth_mask(landmarks: np.ndarray, size: int) -> np.ndarray:
    """float32 [S, S]: the hulls of both eyes and the mouth, dilated by a twentieth of the side."""
    mask = np.zeros((size, size), np.float32)
    for part in (landmarks[36:42], landmarks[42:48], landmarks[48:60]):
        hull = cv2.convexHull(np.round(part).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 1.0)
    k = max(3, size // 20 | 1)
    return cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))


def training_sample(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator,
                    warp: bool = True) -> Sample:
    """One augmented pair from an aligned face uint8 [S, S, 3] and its landmarks [68, 2] in aligned pixels."""
    size = image.shape[0]
    matrix = random_similarity(size, rng)
    target = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    points = apply_affine(landmarks, matrix).astype(np.float32)
    source = target
    if warp:
        map_x, map_y = random_warp_maps(size, rng)
        source = cv2.remap(target, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return Sample(source, target, face_mask(points, size, feather=0.01), eyes_mouth_mask(points, size))
