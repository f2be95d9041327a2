"""The swap's training loss, DFL's recipe: DSSIM + MSE inside the face mask, extra L1 on eyes and mouth, and
MSE of the predicted mask against the landmark hull. Images are float [N, C, H, W] in [0, 1]."""
from __future__ import annotations

import torch
import torch.nn.functional as F

SSIM_SIGMA = 1.5
C1, C2 = 0.01 ** 2, 0.03 ** 2


def ssim_kernel_size(resolution: int) -> int:
    """DFL's window: about a twelfth of the side, odd, at least 3."""
    return max(3, int(resolution / 11.6) | 1)


def _gaussian_window(size: int, channels: int, device: torch.device) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-x.square() / (2 * SSIM_SIGMA ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()   # [C, 1, k, k]


def dssim(a: torch.Tensor, b: torch.Tensor, kernel: int) -> torch.Tensor:
    """(1 - SSIM) / 2, averaged over pixels and channels: 0 for equal images, at most 1."""
    channels = a.shape[1]
    window = _gaussian_window(kernel, channels, a.device).to(a.dtype)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, window, groups=channels)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a.square()
    var_b = blur(b * b) - mu_b.square()
    cov = blur(a * b) - mu_a * mu_b
    ssim = ((2 * mu_a * mu_b + C1) * (2 * cov + C2)) / ((mu_a.square() + mu_b.square() + C1) * (var_a + var_b + C2))
    return (1 - ssim.mean()) / 2


def identity_loss(pred: torch.Tensor, pred_mask: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                  eyes_mouth: torch.Tensor, eyes_mouth_weight: float) -> dict[str, torch.Tensor]:
    """One decoder's loss terms. pred/target [N, 3, R, R]; pred_mask/mask/eyes_mouth [N, 1, R, R]."""
    kernel = ssim_kernel_size(target.shape[-1])
    masked_pred, masked_target = pred * mask, target * mask
    face = 10 * dssim(masked_pred, masked_target, kernel) + 10 * F.mse_loss(masked_pred, masked_target)
    detail = eyes_mouth_weight * ((pred - target).abs() * eyes_mouth).mean()
    mask_loss = 10 * F.mse_loss(pred_mask, mask)
    return {"face": face, "eyes_mouth": detail, "mask": mask_loss, "total": face + detail + mask_loss}
