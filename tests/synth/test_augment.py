"""DiffAugment: shapes kept, differentiable, and each transform does what it says."""
from __future__ import annotations

import pytest
import torch

from synth.augment import AugmentError, brightness, cutout, diff_augment, translation

torch.set_num_threads(1)


def test_full_policy_keeps_shape_and_is_differentiable():
    torch.manual_seed(0)
    x = torch.randn(6, 3, 16, 16, requires_grad=True)
    y = diff_augment(x, "color,translation,cutout")
    assert y.shape == x.shape
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not torch.equal(y, x)


def test_empty_policy_is_identity_and_unknown_is_refused():
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(diff_augment(x, ""), x)
    with pytest.raises(AugmentError, match="blur"):
        diff_augment(x, "color,blur")


def test_brightness_adds_one_constant_per_image():
    torch.manual_seed(1)
    x = torch.randn(4, 3, 8, 8)
    d = brightness(x) - x
    per_image = d.flatten(1)
    assert torch.allclose(per_image, per_image[:, :1].expand_as(per_image), atol=1e-6)
    assert per_image[:, 0].abs().max() <= 0.5


def test_translation_is_a_shift_with_zero_fill():
    torch.manual_seed(2)
    x = torch.rand(8, 3, 16, 16) + 1                                   # strictly positive: zeros mark the fill
    y = translation(x, ratio=0.125)
    for i in range(8):
        matches = []
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                shifted = torch.zeros_like(x[i])
                src = x[i][:, max(dy, 0): 16 + min(dy, 0), max(dx, 0): 16 + min(dx, 0)]
                shifted[:, max(-dy, 0): 16 + min(-dy, 0), max(-dx, 0): 16 + min(-dx, 0)] = src
                matches.append(torch.equal(shifted, y[i]))
        assert sum(matches) == 1, f"image {i} is not a shift of at most 2 px"


def test_cutout_zeroes_one_square_per_image():
    torch.manual_seed(3)
    x = torch.rand(16, 3, 16, 16) + 1
    y = cutout(x, ratio=0.5)
    zero = (y == 0).all(dim=1)                                        # [N, H, W]
    for i in range(16):
        rows = zero[i].any(dim=1).nonzero().flatten()
        cols = zero[i].any(dim=0).nonzero().flatten()
        assert 0 < zero[i].sum() <= 64                                # at most the 8x8 square
        assert zero[i].sum() == len(rows) * len(cols)                 # a rectangle (clipped square)
        assert torch.equal(y[i][:, ~zero[i]], x[i][:, ~zero[i]])
