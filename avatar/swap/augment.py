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
from scipy.spatial import Delaunay

from avatar.align import apply_affine
from avatar.driving import MOUTH_OPENING_RANGE, inter_ocular
from avatar.face import face_mask
from avatar.mesh_warp import JAW_FOLLOW, LOWER_INNER, LOWER_LIP, UPPER_INNER, border_points, folds, piecewise_affine

ROTATION = 10.0     # degrees, either way
SCALE = 0.05        # relative, either way
SHIFT = 0.05        # fraction of the side, either way
WARP_SIGMA = 0.24   # grid-point displacement, in cells (DFL's value)
MOUTH_OPEN_BY = (0.1, 0.35)   # mouth_moved's opening, on avatar.driving's mouth-opening scale (0 shut .. 1 wide)


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


def mouth_moved(image: np.ndarray, landmarks: np.ndarray, change: float) -> tuple[np.ndarray, np.ndarray]:
    """The face with its mouth opened (change > 0) or closed (change < 0) by `change` on avatar.driving's
    mouth-opening scale, the jaw and lower lip moved along a mesh of the landmarks (fixed points around the crop
    stay put): new expressions for a face set whose mouths barely move, as the GAN's do. Closing stops where the
    lips meet; a move that would fold the mesh leaves the face as it was. Returns (image, landmarks)."""
    lm = np.asarray(landmarks, np.float64)
    gap = float(np.max(lm[LOWER_INNER, 1] - lm[UPPER_INNER, 1]))
    drop = max(change * MOUTH_OPENING_RANGE[1] * float(inter_ocular(lm)), -max(gap, 0.0))
    moved = lm.copy()
    moved[:, 1] += drop * JAW_FOLLOW
    moved[LOWER_LIP, 1] += drop
    meet = moved[LOWER_INNER, 1] <= moved[UPPER_INNER, 1]            # lips that would cross meet, point on point
    moved[np.array(LOWER_INNER)[meet]] = moved[np.array(UPPER_INNER)[meet]]
    size = image.shape[0]
    frame = border_points(size) * 1.5 - size / 4          # fixed points beyond the crop: the chin may move
    src, dst = np.concatenate([lm, frame]), np.concatenate([moved, frame])    # down to its bottom edge
    triangles = Delaunay(src).simplices
    if folds(src, dst, triangles):
        return image, np.asarray(landmarks, np.float32)
    return piecewise_affine(image, src, dst, triangles), moved.astype(np.float32)


def random_mouth(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """mouth_moved by a random amount: half the time shut (the lips brought together), half the time opened by
    MOUTH_OPEN_BY."""
    change = -1.0 if rng.random() < 0.5 else rng.uniform(*MOUTH_OPEN_BY)
    return mouth_moved(image, landmarks, change)


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
