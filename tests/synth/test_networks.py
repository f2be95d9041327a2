"""StyleGAN2 networks at tiny sizes: shapes, gradients, demodulation, truncation, minibatch-std grouping."""
from __future__ import annotations

import pytest
import torch

from synth.networks import (Discriminator, Generator, MinibatchStd, ModulatedConv, build_networks)
from synth.presets import Preset, PresetError, get_preset

torch.set_num_threads(1)

TINY = Preset(name="tiny", resolution=16, z_dim=16, w_dim=16, mapping_layers=2, channel_base=128, channel_max=16,
              batch_size=4)


def _nets() -> tuple[Generator, Discriminator]:
    torch.manual_seed(0)
    return build_networks(TINY)


def test_generator_and_discriminator_shapes():
    G, D = _nets()
    z = torch.randn(4, G.z_dim)
    img = G(z)
    assert G.img_resolution == 16 and G.z_dim == 16
    assert img.shape == (4, 3, 16, 16)
    assert img.dtype == torch.float32 and torch.isfinite(img).all()
    assert D(img).shape == (4, 1)
    # 16 px: blocks at 4 (1 conv), 8 and 16 (2 convs each), plus the last toRGB.
    assert G.num_ws == 1 + 2 + 2 + 1
    assert G.mapping(z).shape == (4, G.num_ws, 16)


def test_gradients_reach_every_parameter():
    G, D = _nets()
    img = G(torch.randn(4, G.z_dim), noise_mode="random")
    D(img).sum().backward()
    for name, p in list(G.named_parameters()) + list(D.named_parameters()):
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, f"zero gradient for {name}"


def test_noise_modes():
    G, _ = _nets()
    z = torch.randn(2, G.z_dim)
    for block in G.synthesis.blocks:       # noise strength starts at 0: give it weight so the modes differ
        for layer in (block.conv0, block.conv1):
            if layer is not None:
                layer.noise_strength.data.fill_(0.5)
    with torch.no_grad():
        const = G(z, noise_mode="const")
        assert torch.equal(const, G(z, noise_mode="const"))
        assert not torch.equal(G(z, noise_mode="random"), G(z, noise_mode="random"))
        with pytest.raises(ValueError):
            G(z, noise_mode="loud")


@pytest.mark.parametrize("style_scale", [0.1, 10.0])
def test_demodulation_gives_unit_output_scale(style_scale):
    torch.manual_seed(0)
    layer = ModulatedConv(64, 64, w_dim=32, resolution=16)
    x = torch.randn(8, 64, 16, 16)                                    # unit-variance input
    w = torch.zeros(8, 32)                                            # styles = the affine bias
    layer.affine.bias.data = style_scale * (0.5 + torch.rand(64))     # styles far from 1
    with torch.no_grad():
        y = layer(x, w, noise_mode="none")
    # Pre-activation std is 1 by construction; leaky ReLU with gain sqrt(2) keeps the RMS at ~sqrt(1.04).
    rms = y.square().mean().sqrt().item()
    assert 0.85 < rms < 1.2
    # Without demodulation the scale would follow the styles (the check above would fail).
    layer_out_plain = torch.nn.functional.conv2d(x * layer.affine(w).reshape(8, -1, 1, 1),
                                                 layer.weight * layer.weight_gain, padding=1)
    assert abs(layer_out_plain.std().item() - 1) > 0.3


def test_truncation_to_w_avg():
    G, _ = _nets()
    with torch.no_grad():
        for _ in range(50):
            G.mapping(torch.randn(64, G.z_dim), update_w_avg=True)
        assert G.mapping.w_avg.abs().sum() > 0
        z = torch.randn(3, G.z_dim)
        ws = G.mapping(z, truncation_psi=0.0)
        assert torch.allclose(ws, G.mapping.w_avg.expand_as(ws))
        img = G(z, truncation_psi=0.0)
        assert torch.allclose(img[0], img[1], atol=1e-5)
        cut = G.mapping(z, truncation_psi=0.0, truncation_cutoff=2)
        assert torch.allclose(cut[:, :2], G.mapping.w_avg.expand(3, 2, -1))
        assert not torch.allclose(cut[:, 2:], G.mapping.w_avg.expand(3, G.num_ws - 2, -1))


def test_w_avg_tracks_the_mean_of_w():
    G, _ = _nets()
    mapping = G.mapping
    z = torch.randn(256, G.z_dim)
    with torch.no_grad():
        target = mapping(z)[:, 0].mean(0)
        for _ in range(3000):
            mapping(z, update_w_avg=True)
    assert torch.allclose(mapping.w_avg, target, atol=1e-3)


def test_minibatch_std_groups_consecutive_samples():
    mbstd = MinibatchStd(group_size=2)
    x = torch.randn(4, 3, 4, 4)
    y = mbstd(x)
    assert y.shape == (4, 4, 4, 4)
    x2 = x.clone()
    x2[3] *= 5                                                        # changes group (2, 3) only
    y2 = mbstd(x2)
    assert torch.equal(y[:2, 3], y2[:2, 3])
    assert not torch.equal(y[2:, 3], y2[2:, 3])
    with pytest.raises(ValueError):
        mbstd(torch.randn(3, 3, 4, 4))


def test_presets():
    for name in ("smoke", "cpu64", "paper256"):
        preset = get_preset(name)
        assert Preset.from_dict(preset.to_dict()) == preset
    assert get_preset("cpu64").resolution == 64 and get_preset("paper256").resolution == 256
    assert get_preset("paper256").channels(256) == 128 and get_preset("paper256").channels(16) == 512
    assert get_preset("paper256").mapping_layers == 8
    with pytest.raises(PresetError, match="unknown preset"):
        get_preset("huge")
    with pytest.raises(PresetError):
        Preset(name="bad", resolution=48)
