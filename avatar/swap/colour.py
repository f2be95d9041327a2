"""Colour transfer between faces, as short pure functions over RGB uint8 images and float masks.

Statistics are taken in CIE Lab (OpenCV's float scaling: L in [0, 100], a and b around 0) inside a mask, so
the background never pulls the face's colour. Reinhard et al.'s transfer (DFL's "rct") moves an image's per-
channel Lab mean and standard deviation onto a target's; histogram matching moves whole distributions.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

COLOUR_MODES = ("rct", "hist", "none")
MAX_STD_RATIO = 3.0     # Reinhard transfer scales each channel's spread by at most this


@dataclass(frozen=True)
class LabStats:
    """Per-channel mean and standard deviation in Lab."""

    mean: np.ndarray   # float32 [3]
    std: np.ndarray    # float32 [3]

    def as_array(self) -> np.ndarray:
        return np.concatenate([self.mean, self.std]).astype(np.float32)

    @classmethod
    def from_array(cls, values: np.ndarray) -> LabStats:
        return cls(np.asarray(values[:3], np.float32), np.asarray(values[3:], np.float32))


def to_lab(image: np.ndarray) -> np.ndarray:
    """RGB uint8 [H, W, 3] -> Lab float32 [H, W, 3]."""
    return cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


def from_lab(lab: np.ndarray) -> np.ndarray:
    """Lab float32 [H, W, 3] -> RGB uint8 [H, W, 3], clipped."""
    rgb = cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_LAB2RGB)
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def lab_stats(image: np.ndarray, mask: np.ndarray | None = None) -> LabStats:
    """Lab mean and std of the pixels where `mask` (float [H, W]) is above one half; all pixels without a mask."""
    lab = to_lab(image).reshape(-1, 3)
    if mask is not None:
        keep = np.asarray(mask).reshape(-1) > 0.5
        if keep.sum() >= 16:
            lab = lab[keep]
    return LabStats(lab.mean(0).astype(np.float32), np.maximum(lab.std(0), 1e-3).astype(np.float32))


def reinhard_transfer(image: np.ndarray, source: LabStats, target: LabStats) -> np.ndarray:
    """`image` (whose statistics are `source`) with its Lab mean and std moved to `target`'s."""
    lab = to_lab(image)
    ratio = np.clip(target.std / source.std, 1 / MAX_STD_RATIO, MAX_STD_RATIO)   # a flat face must not explode
    lab = (lab - source.mean) * ratio + target.mean
    return from_lab(lab)


def rct(image: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None,
        target_mask: np.ndarray | None = None) -> np.ndarray:
    """Reinhard colour transfer of `image` towards `target`, statistics taken inside the masks."""
    return reinhard_transfer(image, lab_stats(image, mask), lab_stats(target, target_mask))


def histogram_match(image: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None,
                    target_mask: np.ndarray | None = None) -> np.ndarray:
    """Each Lab channel of `image` mapped through its CDF onto the target's (inside the masks)."""
    lab, ref = to_lab(image), to_lab(target)
    keep = np.ones(lab.shape[:2], bool) if mask is None else np.asarray(mask) > 0.5
    keep_ref = np.ones(ref.shape[:2], bool) if target_mask is None else np.asarray(target_mask) > 0.5
    if keep.sum() < 16 or keep_ref.sum() < 16:
        return image.copy()
    out = lab.copy()
    quantiles = np.linspace(0, 1, 256)
    for c in range(3):
        src_q = np.quantile(lab[..., c][keep], quantiles)
        ref_q = np.quantile(ref[..., c][keep_ref], quantiles)
        out[..., c] = np.interp(lab[..., c], src_q, ref_q)
    return from_lab(out)
