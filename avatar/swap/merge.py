"""Putting the subject's face onto driving frames: DFL's merge as pure functions that receive a predictor.

Per frame: aligned crop from the landmarks -> predictor (dst -> src face and mask) -> colour transfer to the
driving face -> mask = predicted mask x landmark hull, eroded and blurred -> warped back and alpha-blended
(or OpenCV's seamlessClone). Over a clip, the landmarks and the colour statistics are smoothed along time
first, so the face neither jitters nor flickers in colour from frame to frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

from avatar.align import align, align_transform, apply_affine, face_roi
from avatar.face import blend_into, face_mask
from avatar.swap.colour import COLOUR_MODES, LabStats, histogram_match, lab_stats, reinhard_transfer

# aligned faces uint8 [N, S, S, 3] -> (faces uint8 [N, S, S, 3], masks float32 [N, S, S]): avatar.types.FaceModel
Predictor = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
BLEND_MODES = ("alpha", "seamless")


@dataclass(frozen=True)
class MergeOptions:
    colour: str = "rct"          # "rct" (Reinhard in Lab), "hist" (histogram matching) or "none"
    blend: str = "alpha"         # "alpha" (feathered) or "seamless" (OpenCV seamlessClone)
    erode: float = 0.03          # mask erosion, fraction of the aligned side
    blur: float = 0.05           # mask feather (Gaussian sigma), fraction of the aligned side
    landmark_sigma: float = 1.5  # temporal smoothing of landmarks, frames (0: none)
    colour_sigma: float = 4.0    # temporal smoothing of colour statistics, frames (0: none)
    batch: int = 32              # faces per predictor call

    def __post_init__(self) -> None:
        if self.colour not in COLOUR_MODES:
            raise ValueError(f"colour must be one of {', '.join(COLOUR_MODES)}, got {self.colour!r}")
        if self.blend not in BLEND_MODES:
            raise ValueError(f"blend must be one of {', '.join(BLEND_MODES)}, got {self.blend!r}")


@dataclass(frozen=True)
class SwappedFace:
    """One frame's aligned driving face, the predictor's subject face for it, and the blend mask."""

    transform: np.ndarray   # float64 [2, 3] frame pixels -> aligned pixels
    crop: np.ndarray        # uint8 [S, S, 3] the driving face, aligned
    face: np.ndarray        # uint8 [S, S, 3] the subject's face, before colour transfer
    mask: np.ndarray        # float32 [S, S] in [0, 1]


def blend_mask(predicted: np.ndarray, landmarks: np.ndarray, options: MergeOptions) -> np.ndarray:
    """The predicted mask inside the landmark hull (never less than the hull's core), eroded and feathered;
    float32 [S, S]."""
    size = predicted.shape[0]
    hull = (face_mask(landmarks, size, feather=0.01) > 0.5).astype(np.float32)
    core = cv2.erode(hull, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * (size // 10) + 1,) * 2))
    # The learned mask shapes the edge; the core of the hull is always replaced, so that a weak prediction
    # never lets the driving person's own face show through.
    mask = np.maximum((np.minimum(predicted, hull) > 0.5).astype(np.float32), core)
    k = int(round(options.erode * size))
    if k > 0:
        mask = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
    sigma = options.blur * size
    return cv2.GaussianBlur(mask, (0, 0), sigma) if sigma > 0 else mask


def swap_faces(frames: list[np.ndarray], landmarks: np.ndarray, predictor: Predictor, size: int,
               options: MergeOptions) -> list[SwappedFace]:
    """Align each frame's face, run the predictor in batches, and make each blend mask."""
    transforms = [align_transform(lm, size) for lm in landmarks]
    crops = np.stack([align(f, t, size) for f, t in zip(frames, transforms)])
    out: list[SwappedFace] = []
    for start in range(0, len(crops), options.batch):
        faces, masks = predictor(crops[start:start + options.batch])
        for k in range(len(faces)):
            i = start + k
            aligned_lm = apply_affine(landmarks[i], transforms[i])
            out.append(SwappedFace(transforms[i], crops[i], faces[k], blend_mask(masks[k], aligned_lm, options)))
    return out


def transfer_colour(face: SwappedFace, mode: str, source: LabStats | None = None,
                    target: LabStats | None = None) -> np.ndarray:
    """The subject's face in the driving face's colours (statistics inside the blend mask unless given)."""
    if mode == "none":
        return face.face
    if mode == "hist":
        return histogram_match(face.face, face.crop, face.mask, face.mask)
    source = source or lab_stats(face.face, face.mask)
    target = target or lab_stats(face.crop, face.mask)
    return reinhard_transfer(face.face, source, target)


def compose(frame: np.ndarray, swapped: SwappedFace, face: np.ndarray, blend: str) -> np.ndarray:
    """`frame` with `face` (aligned, already recoloured) blended back through the swapped face's mask."""
    out = frame.copy()
    size = face.shape[0]
    if blend == "seamless":
        cloned = _seamless(out, swapped, face)
        if cloned is not None:
            return cloned
    blend_into(out, face, swapped.mask, swapped.transform, face_roi(swapped.transform, size, frame.shape))
    return out


def _seamless(frame: np.ndarray, swapped: SwappedFace, face: np.ndarray) -> np.ndarray | None:
    """seamlessClone of the face into the frame; None when the mask is too small for it (then alpha-blended, so
    that the driving person's own face is never shown)."""
    h, w = frame.shape[:2]
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    back = cv2.warpAffine(face, swapped.transform, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    mask = cv2.warpAffine(swapped.mask, swapped.transform, (w, h), flags=flags, borderValue=0)
    binary = (mask > 0.5).astype(np.uint8) * 255
    binary[[0, -1], :] = 0                                  # seamlessClone needs the mask off the border
    binary[:, [0, -1]] = 0
    ys, xs = np.nonzero(binary)
    if len(xs) < 16:
        return None
    centre = (int((xs.min() + xs.max() + 1) // 2), int((ys.min() + ys.max() + 1) // 2))
    return cv2.seamlessClone(back, frame, binary, centre, cv2.NORMAL_CLONE)


def merge_frame(frame: np.ndarray, landmarks: np.ndarray, predictor: Predictor, size: int,
                options: MergeOptions = MergeOptions()) -> np.ndarray:
    """One driving frame uint8 [H, W, 3] with the subject's face, without temporal smoothing."""
    swapped = swap_faces([frame], landmarks[None], predictor, size, options)[0]
    return compose(frame, swapped, transfer_colour(swapped, options.colour), options.blend)


def smooth_along_time(values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of [N, ...] along axis 0 (edges held), a no-op for sigma 0 or a single row."""
    if sigma <= 0 or len(values) < 2:
        return np.asarray(values, np.float32)
    return gaussian_filter1d(np.asarray(values, np.float64), sigma, axis=0, mode="nearest").astype(np.float32)


def merge_clip(frames: list[np.ndarray], landmarks: np.ndarray, predictor: Predictor, size: int,
               options: MergeOptions = MergeOptions()) -> list[np.ndarray]:
    """Consecutive frames of one shot, each with exactly one face (landmarks [N, 68, 2]), with the subject's
    face: landmarks and colour statistics smoothed along time before use."""
    smoothed = smooth_along_time(landmarks, options.landmark_sigma)
    swapped = swap_faces(frames, smoothed, predictor, size, options)
    if options.colour != "rct":
        return [compose(f, s, transfer_colour(s, options.colour), options.blend) for f, s in zip(frames, swapped)]
    source = smooth_along_time(np.stack([lab_stats(s.face, s.mask).as_array() for s in swapped]), options.colour_sigma)
    target = smooth_along_time(np.stack([lab_stats(s.crop, s.mask).as_array() for s in swapped]), options.colour_sigma)
    return [compose(f, s, transfer_colour(s, "rct", LabStats.from_array(a), LabStats.from_array(b)), options.blend)
            for f, s, a, b in zip(frames, swapped, source, target)]
