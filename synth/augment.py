"""DiffAugment (Zhao et al. 2020): differentiable colour, translation and cutout, applied to real and fake images
alike before the discriminator, so that D cannot memorise a small dataset and G still gets gradients.

Each function draws its own per-sample random parameters from torch's global generator (so training stays
reproducible from the saved RNG state) and works on NCHW float images in [-1, 1].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


class AugmentError(ValueError):
    """An unknown DiffAugment policy name."""


def _rand(x: torch.Tensor) -> torch.Tensor:
    return torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device)   # [N, 1, 1, 1] in [0, 1)


def brightness(x: torch.Tensor) -> torch.Tensor:
    return x + (_rand(x) - 0.5)


def saturation(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)                                # [N, 1, H, W]
    return (x - mean) * (_rand(x) * 2) + mean


def contrast(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=[1, 2, 3], keepdim=True)                        # [N, 1, 1, 1]
    return (x - mean) * (_rand(x) + 0.5) + mean


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ratio * size pixels in x and y, filling with zeros."""
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sh, sh + 1, (n, 1, 1), device=x.device)
    tx = torch.randint(-sw, sw + 1, (n, 1, 1), device=x.device)
    grid_b, grid_y, grid_x = torch.meshgrid(torch.arange(n, device=x.device), torch.arange(h, device=x.device),
                                            torch.arange(w, device=x.device), indexing="ij")
    grid_y = torch.clamp(grid_y + ty + 1, 0, h + 1)
    grid_x = torch.clamp(grid_x + tx + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)              # [N, H+2, W+2, C]
    return padded[grid_b, grid_y, grid_x].permute(0, 3, 1, 2)         # [N, C, H, W]


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of ratio * size per image at a random position (it may overhang the border)."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device)
    ox = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device)
    ys = torch.arange(h, device=x.device).reshape(1, h, 1)
    xs = torch.arange(w, device=x.device).reshape(1, 1, w)
    inside = (ys - oy + ch // 2 >= 0) & (ys - oy + ch // 2 < ch) & (xs - ox + cw // 2 >= 0) & (xs - ox + cw // 2 < cw)
    mask = (~inside).to(x.dtype).unsqueeze(1)                         # [N, 1, H, W]
    return x * mask


POLICIES = {
    "color": (brightness, saturation, contrast),
    "translation": (translation,),
    "cutout": (cutout,),
}


def parse_policy(policy: str) -> tuple[str, ...]:
    """Split "color,translation,cutout" into names, refusing unknown ones."""
    names = tuple(p.strip() for p in policy.split(",") if p.strip())
    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        raise AugmentError(f"unknown DiffAugment policy {', '.join(unknown)}; known: {', '.join(POLICIES)}")
    return names


def diff_augment(x: torch.Tensor, policy: str = "color,translation,cutout") -> torch.Tensor:
    """Apply the policy's augmentations in order; the result keeps x's shape and is differentiable in x."""
    for name in parse_policy(policy):
        for fn in POLICIES[name]:
            x = fn(x)
    return x
