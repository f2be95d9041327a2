"""Inception Score: exp(E_x KL(p(y|x) || p(y))), mean and variance over splits (Salimans et al. 2016).

No ImageNet classifier weights can be had offline here, so the classifier is a TorchScript file given by path:
a module taking float [N, 3, 299, 299] RGB in [-1, 1] (the FID resize) and returning class logits [N, K].
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from synth.metrics.fid import resize_for_inception
from synth.metrics.images import MetricsError

NO_WEIGHTS = "n/a (no classifier weights)"


def inception_score(logits: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """Mean and variance of the score over `splits` equal parts of logits [N, K]."""
    logits = np.asarray(logits, np.float64)
    if logits.ndim != 2 or len(logits) < splits:
        raise MetricsError(f"Inception Score needs logits [N >= {splits}, K], got {list(logits.shape)}")
    log_p = logits - logits.max(1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))                  # log softmax, stable
    scores = []
    for part in np.array_split(log_p, splits):
        log_marginal = np.log(np.exp(part).mean(0))
        kl = (np.exp(part) * (part - log_marginal)).sum(1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.var(scores))


@torch.inference_mode()
def classifier_logits(images: Sequence[np.ndarray], weights: Path, device: str = "cpu", batch: int = 16) -> np.ndarray:
    """Logits [N, K] of uint8 RGB images from the TorchScript classifier at `weights`."""
    try:
        model = torch.jit.load(str(weights), map_location=device).eval()
    except (RuntimeError, ValueError, OSError) as e:
        raise MetricsError(f"{weights}: not a loadable TorchScript classifier ({e})") from e
    out = []
    for start in range(0, len(images), batch):
        x = np.stack([resize_for_inception(im) for im in images[start:start + batch]])    # [NHWC] 0..255
        x = torch.from_numpy(x).permute(0, 3, 1, 2).to(device) / 127.5 - 1                # [NCHW] -1..1
        out.append(model(x).double().cpu().numpy())
    return np.concatenate(out)
