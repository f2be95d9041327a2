"""Painting on a warped face photo: the mouth's dark interior with upper teeth, a lip seam for closed lips,
lash lines for closed eyes, and the photo's own teeth and eyeballs inpainted away (avatar/default_avatar.py)."""
from __future__ import annotations

import cv2
import numpy as np

from avatar.driving import inter_ocular

MOUTH_DARK = np.array([28, 8, 10], np.float32)       # RGB deep in the mouth
MOUTH_EDGE = np.array([90, 38, 38], np.float32)      # RGB just inside the lips
TEETH = np.array([240, 232, 216], np.float32)        # RGB of the teeth, lit
LASHES = np.array([58, 40, 32], np.float32)          # RGB of a closed eye's lash line
TONGUE = np.array([150, 62, 62], np.float32)         # RGB of the tongue
TEETH_HEIGHT = (0.5, 0.12)                             # visible upper teeth: fraction of the gap, at most IOD x
TOOTH_WIDTH = 0.13                                   # in IOD, for the faint gaps between teeth


def smooth_loop(points: np.ndarray, n: int = 64) -> np.ndarray:
    """A closed Catmull-Rom curve through `points`, n samples."""
    p = np.asarray(points, np.float64)
    k = len(p)
    t = np.linspace(0, k, n, endpoint=False)
    i = np.floor(t).astype(int)
    f = (t - i)[:, None]
    p0, p1, p2, p3 = p[(i - 1) % k], p[i % k], p[(i + 1) % k], p[(i + 2) % k]
    return 0.5 * (2 * p1 + (p2 - p0) * f + (2 * p0 - 5 * p1 + 4 * p2 - p3) * f**2 + (3 * p1 - p0 - 3 * p2 + p3) * f**3)


def soft_polygon(shape: tuple[int, int], polygon: np.ndarray, blur: float) -> np.ndarray:
    mask = np.zeros(shape, np.float32)
    cv2.fillPoly(mask, [np.round(polygon * 8).astype(np.int32)], 1.0, cv2.LINE_AA, shift=3)
    return cv2.GaussianBlur(mask, (0, 0), blur) if blur > 0 else mask


def draw_lip_seam(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """A closed mouth: a soft dark line where the lips meet, darkest in the corners."""
    seam = smooth_loop(landmarks[60:68])[:33]
    x0, y0 = np.floor(seam.min(0)).astype(int) - 3
    x1, y1 = np.ceil(seam.max(0)).astype(int) + 4
    roi = image[y0:y1, x0:x1].astype(np.float32)
    line = np.zeros(roi.shape[:2], np.float32)
    cv2.polylines(line, [np.round((seam - (x0, y0)) * 8).astype(np.int32)], False, 1.0, 1, cv2.LINE_AA, shift=3)
    line = cv2.GaussianBlur(line, (0, 0), 0.6)
    line = np.clip(line / max(line.max(), 1e-6), 0, 1)
    xs = np.arange(roi.shape[1], dtype=np.float32)
    mid, half = (seam[:, 0].min() + seam[:, 0].max()) / 2 - x0, np.ptp(seam[:, 0]) / 2
    strength = 0.55 + 0.35 * np.clip(np.abs(xs - mid) / max(half, 1.0), 0, 1) ** 2
    alpha = (line * strength)[..., None]
    out = image.copy()
    out[y0:y1, x0:x1] = np.clip(roi + (MOUTH_EDGE - roi) * alpha, 0, 255).astype(np.uint8)
    return out


def paint_mouth_interior(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Paint the inside of the inner-lip contour (60-67) dark, with upper (and when wide open, lower) teeth."""
    iod = float(inter_ocular(landmarks))
    inner = landmarks[60:68].astype(np.float64)
    gap = float(np.mean(np.linalg.norm(inner[[1, 2, 3]] - inner[[7, 6, 5]], axis=1)))
    if gap < 0.02 * iod:
        return draw_lip_seam(image, landmarks)
    x0, y0 = np.floor(inner.min(0)).astype(int) - 4
    x1, y1 = np.ceil(inner.max(0)).astype(int) + 5
    x0, y0 = max(x0, 0), max(y0, 0)
    roi = image[y0:y1, x0:x1].astype(np.float32)
    loop = smooth_loop(inner) - (x0, y0)
    mouth = soft_polygon(roi.shape[:2], loop, 0.6)

    # Darker towards the middle of the opening.
    centre = inner.mean(0) - (x0, y0)
    ys, xs = np.mgrid[0:roi.shape[0], 0:roi.shape[1]].astype(np.float32)
    half = np.maximum(np.ptp(inner, axis=0) / 2, 1.0)
    r = np.clip(np.hypot((xs - centre[0]) / half[0], (ys - centre[1]) / half[1]), 0, 1)[..., None]
    colour = MOUTH_DARK + (MOUTH_EDGE - MOUTH_DARK) * r**2
    tongue_y = centre[1] + 0.75 * half[1]                      # the tongue: a soft red bulge at the bottom
    tongue = np.exp(-(((xs - centre[0]) / (0.6 * half[0])) ** 2 + ((ys - tongue_y) / (0.45 * half[1])) ** 2))
    colour = colour + (TONGUE - colour) * (0.6 * tongue[..., None])

    # Teeth: the upper inner lip curve (60..64) moved down, closed back along itself; narrower than the mouth.
    upper = smooth_loop(inner)[:33] - (x0, y0)
    upper = upper[upper[:, 0].argsort()]
    teeth_h = min(TEETH_HEIGHT[0] * gap, TEETH_HEIGHT[1] * iod)
    fit = np.polyval(np.polyfit(upper[:, 0], upper[:, 1], 2), upper[:, 0])      # a smooth biting edge
    edge = np.stack([upper[:, 0], fit + teeth_h], axis=1)
    teeth = np.concatenate([upper - (0, 2), edge[::-1]])
    teeth_mask = soft_polygon(roi.shape[:2], teeth, 0.5)
    width = max(half[0], 1.0)
    teeth_mask *= np.clip(1.2 - np.abs(xs - centre[0]) / width, 0, 1) ** 0.7    # fade towards the corners
    below_lip = np.clip((ys - np.interp(xs, upper[:, 0], upper[:, 1])) / max(teeth_h, 1.0), 0, 1)
    gaps = 1.0 - 0.04 * np.cos(np.pi * (xs - centre[0]) / (TOOTH_WIDTH * iod)) ** 8
    shade = ((0.86 + 0.14 * below_lip**0.5) * gaps)[..., None]                   # shadow under the lip
    colour = colour + (TEETH * shade - colour) * teeth_mask[..., None]
    if gap > 0.22 * iod:                                        # wide open: a sliver of lower teeth
        lower = smooth_loop(inner)[32:] - (x0, y0)
        lower = lower[lower[:, 0].argsort()]
        low_h = 0.25 * teeth_h
        lower_mask = soft_polygon(roi.shape[:2], np.concatenate([lower, (lower - (0, low_h))[::-1]]), 0.5)
        lower_mask *= np.clip(0.9 - np.abs(xs - centre[0]) / width, 0, 1) ** 0.7
        colour = colour + (TEETH * 0.6 - colour) * (0.7 * lower_mask[..., None])

    out = image.copy()
    out[y0:y1, x0:x1] = np.clip(roi + (colour - roi) * mouth[..., None], 0, 255).astype(np.uint8)
    return out


def hide_teeth(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The photo with the teeth between the inner lips inpainted from the lips around them."""
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(landmarks[60:68]).astype(np.int32)], 255)
    mask = cv2.dilate(mask, np.ones((3, 3), np.uint8))
    return cv2.inpaint(image, mask, 3, cv2.INPAINT_TELEA)


def hide_eyes(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The photo with both eyeballs inpainted from the lids around them, for closed-eye frames."""
    mask = np.zeros(image.shape[:2], np.uint8)
    for eye in (landmarks[36:42], landmarks[42:48]):
        cv2.fillPoly(mask, [np.round(eye).astype(np.int32)], 255)
    mask = cv2.dilate(mask, np.ones((3, 3), np.uint8))
    return cv2.inpaint(image, mask, 3, cv2.INPAINT_TELEA)


def draw_lashes(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Dark lash lines along closed lids."""
    lines = np.zeros(image.shape[:2], np.float32)
    for eye in (landmarks[36:42], landmarks[42:48]):
        lid = smooth_loop(eye, 36)[:19]                       # from the outer corner over the upper lid
        cv2.polylines(lines, [np.round(lid * 8).astype(np.int32)], False, 1.0, 1, cv2.LINE_AA, shift=3)
    alpha = 0.6 * np.clip(cv2.GaussianBlur(lines, (0, 0), 0.6) * 1.6, 0, 1)[..., None]
    return np.clip(image + (LASHES - image) * alpha, 0, 255).astype(np.uint8)

