"""The one face crop rule, FFHQ's (Karras et al., ffhq-dataset): a similarity transform to a fixed template.

From the 68 landmarks: eye centres, mouth centre. The crop is a square whose side is
max(4 x eye distance, 3.6 x eye-to-mouth distance), centred 0.1 of the eye-to-mouth vector below the eye
midpoint, and rotated by the mean of the eye line and the normal of the eye-to-mouth line. For a typical face
the eye distance decides the scale, so the eyes land level at about y = 0.47, a quarter of the side apart,
and the mouth centre near y = 0.74. The renderer, the GAN's dataset and the face swap all crop with it.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import ceil

import cv2
import numpy as np

SIZES = (64, 128, 256)    # the GAN dataset's sides, pixels


@dataclass(frozen=True)
class AlignedFace:
    """A face cropped to the template, and where its landmarks fall in it."""

    image: np.ndarray         # uint8 [S, S, 3] RGB
    landmarks: np.ndarray     # float32 [68, 2] (x, y) in aligned pixels
    matrix: np.ndarray        # float64 [2, 3] source pixels -> aligned pixels


def apply_affine(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Points [..., 2] through a 2x3 affine matrix, as float64."""
    return np.asarray(points, np.float64) @ np.asarray(matrix, np.float64)[:, :2].T + matrix[:, 2]


def align_transform(landmarks68: np.ndarray, size: int) -> np.ndarray:
    """The similarity transform float64 [2, 3] taking a face with these 68 landmarks to the size x size template."""
    lm = np.asarray(landmarks68, np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"expected 68 landmarks [68, 2], got {list(lm.shape)}")
    eye_left, eye_right = lm[36:42].mean(0), lm[42:48].mean(0)
    eye_avg = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) / 2
    eye_to_mouth = mouth_avg - eye_avg

    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]     # half-side vector along the crop's x axis
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]                               # x turned 90 degrees: towards the mouth
    c = eye_avg + eye_to_mouth * 0.1
    src = np.float32([c - x - y, c + x - y, c - x + y])     # top-left, top-right, bottom-left corners
    dst = np.float32([[0, 0], [size, 0], [0, size]])
    return cv2.getAffineTransform(src, dst).astype(np.float64)


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int) -> AlignedFace:
    """Crop and resize one face to the template; large shrinks warp at full detail first, then area-average."""
    matrix = align_transform(landmarks, size)
    scale = np.hypot(*matrix[:, 0])                         # aligned pixels per source pixel
    factor = max(1, ceil(1 / scale / 1.5))                  # warp at ~source resolution, then shrink by area
    big = factor * size
    warped = cv2.warpAffine(np.ascontiguousarray(image), matrix * [[factor], [factor]], (big, big),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    if factor > 1:
        warped = cv2.resize(warped, (size, size), interpolation=cv2.INTER_AREA)
    points = apply_affine(landmarks, matrix)
    return AlignedFace(warped, points.astype(np.float32), matrix)


def align(frame: np.ndarray, transform: np.ndarray, size: int) -> np.ndarray:
    """The aligned face, uint8 [size, size, 3]: one bilinear warp, for per-frame rendering."""
    return cv2.warpAffine(frame, transform, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def face_roi(transform: np.ndarray, size: int, frame_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the frame pixels an aligned face of side `size` covers, clipped to the frame."""
    inverse = cv2.invertAffineTransform(transform)
    corners = apply_affine(np.array([[0, 0], [size, 0], [0, size], [size, size]]), inverse)
    h, w = frame_shape[:2]
    x0, y0 = np.clip(np.floor(corners.min(0)).astype(int), 0, [w, h])
    x1, y1 = np.clip(np.ceil(corners.max(0)).astype(int) + 1, 0, [w, h])
    return int(x0), int(y0), int(x1), int(y1)
