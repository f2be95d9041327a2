"""StyleGAN2 generator and discriminator (Karras et al. 2020) in plain PyTorch, one readable file.

Generator: mapping network (normalised z -> w, lr multiplier 0.01, w_avg tracked for truncation) and a
skip-architecture synthesis network (4x4 learned constant; per resolution two modulated 3x3 convolutions with
weight demodulation, noise inputs with learned strength, and a toRGB whose output is upsampled and summed).
Discriminator: residual blocks from the image resolution down to 4x4, then minibatch-std and two FC layers.
Every weight uses the equalised learning rate (stored N(0, 1), scaled by 1/sqrt(fan_in) at run time).

Departures from the reference implementation (NVlabs stylegan2-ada-pytorch), for plain torch ops on a CPU:
- Modulation is applied to activations rather than weights ("non-fused": x * s -> conv -> x * d), which is
  mathematically identical and lets every sample share one ordinary convolution.
- Resampling uses the reference FIR filter [1, 3, 3, 1] as a depthwise 4x4 conv. The upsampling convolution
  is, as in the reference, a stride-2 transposed convolution followed by that filter; the skip image is
  upsampled bilinearly (align_corners=False), which is the same filter apart from edge handling. D's
  downsampling convolutions filter-and-subsample first, then convolve at the lower resolution (reference:
  filter, then a stride-2 convolution); the cost is the same.
- The leaky-ReLU gain sqrt(2) is folded into the scale of the preceding linear op (lrelu(g*x) = g*lrelu(x)).
- Minibatch-std groups consecutive samples (reference: strided), so a batch of [fakes; reals] never mixes them.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LRELU_GAIN = math.sqrt(2.0)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU (slope 0.2) scaled to keep unit variance, as StyleGAN uses."""
    return F.leaky_relu(x, 0.2) * LRELU_GAIN


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def blur_kernel(channels: int, gain: float) -> torch.Tensor:
    """Depthwise 4x4 FIR filter [1, 3, 3, 1] (outer product), normalised to sum to `gain`: [C, 1, 4, 4]."""
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    f = torch.outer(f, f)
    return (f * (gain / f.sum())).expand(channels, 1, 4, 4).contiguous()


def fir_filter(x: torch.Tensor, kernel: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """Depthwise FIR filtering with a blur_kernel (padding 1), always in float32: under bfloat16 autocast the
    depthwise convolution's backward has no fast CPU kernel (measured 30x slower than float32 here)."""
    with torch.autocast(x.device.type, enabled=False):
        return F.conv2d(x.float(), kernel, stride=stride, padding=1, groups=x.shape[1])


# ---------------------------------------------------------------------------------------------------------------
# Equalised-learning-rate layers


class FullyConnected(nn.Module):
    """Linear layer with equalised learning rate and optional lr multiplier (0.01 in the mapping network)."""

    def __init__(self, in_features: int, out_features: int, activation: bool = False,
                 lr_mul: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.bias_gain = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)  # [N, out]
        return lrelu(x) if self.activation else x


class Conv2d(nn.Module):
    """Plain (unmodulated) convolution with equalised learning rate, used by D; optional 2x downsampling first."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: bool = True, down: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.activation = activation
        self.down = down
        if down:
            self.register_buffer("blur", blur_kernel(in_channels, gain=1.0), persistent=False)
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:
            x = fir_filter(x, self.blur, stride=2)                    # [N, Cin, H/2, W/2]
        gain = LRELU_GAIN if self.activation else 1.0
        bias = self.bias * gain if self.bias is not None else None
        x = F.conv2d(x, self.weight * (self.weight_gain * gain), bias, padding=self.padding)  # [N, Cout, H, W]
        return F.leaky_relu(x, 0.2) if self.activation else x


# ---------------------------------------------------------------------------------------------------------------
# Generator


class MappingNetwork(nn.Module):
    """z -> w through an MLP; keeps a running mean of w (`w_avg`) for the truncation trick."""

    def __init__(self, z_dim: int, w_dim: int, num_ws: int, num_layers: int = 8,
                 lr_mul: float = 0.01, w_avg_beta: float = 0.995):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws = z_dim, w_dim, num_ws
        self.w_avg_beta = w_avg_beta
        dims = [z_dim] + [w_dim] * num_layers
        self.layers = nn.ModuleList(FullyConnected(dims[i], dims[i + 1], activation=True, lr_mul=lr_mul)
                                    for i in range(num_layers))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
                update_w_avg: bool = False) -> torch.Tensor:
        x = normalize_2nd_moment(z)                                   # [N, z_dim]
        for layer in self.layers:
            x = layer(x)                                              # [N, w_dim]
        if update_w_avg:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        ws = x.unsqueeze(1).repeat(1, self.num_ws, 1)                 # [N, num_ws, w_dim]
        if truncation_psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            ws[:, :cutoff] = self.w_avg.lerp(ws[:, :cutoff], truncation_psi)
        return ws


class ModulatedConv(nn.Module):
    """Modulated 3x3 convolution with weight demodulation, noise input and bias + leaky ReLU (a synthesis layer)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: bool = False):
        super().__init__()
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1.0)   # w -> per-input-channel style
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels * 9)
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        if up:
            self.register_buffer("blur", blur_kernel(out_channels, gain=4.0), persistent=False)
        self.up = up
        self.resolution = resolution

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        n = x.shape[0]
        styles = self.affine(w)                                       # [N, Cin]
        weight = self.weight * self.weight_gain                       # [Cout, Cin, 3, 3]
        # Demodulation: 1 / ||w'|| per sample and output channel, with w' = weight * style.
        dcoefs = (weight.square().sum(dim=[2, 3]) @ styles.square().t() + 1e-8).rsqrt().t()  # [N, Cout]
        x = x * styles.reshape(n, -1, 1, 1)                           # [N, Cin, H, W]
        if self.up:
            x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)   # [N, Cout, 2H+1, 2W+1]
            x = fir_filter(x, self.blur)                              # [N, Cout, 2H, 2W]
        else:
            x = F.conv2d(x, weight, padding=1)                        # [N, Cout, H, W]
        # lrelu(x * d + noise + bias) * sqrt(2), with the gain folded in: one addcmul, one leaky_relu.
        offset = (self.bias * LRELU_GAIN).reshape(1, -1, 1, 1)        # [1, Cout, 1, 1]
        if noise_mode == "random":
            noise = torch.randn(n, 1, self.resolution, self.resolution, device=x.device, dtype=x.dtype)
            offset = offset + noise * (self.noise_strength * LRELU_GAIN)  # [N, Cout, H, W]
        elif noise_mode == "const":
            offset = offset + self.noise_const * (self.noise_strength * LRELU_GAIN)
        elif noise_mode != "none":
            raise ValueError(f"noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}")
        x = torch.addcmul(offset, x, (dcoefs * LRELU_GAIN).reshape(n, -1, 1, 1))
        return F.leaky_relu(x, 0.2)


class ToRGB(nn.Module):
    """Modulated 1x1 convolution to RGB, without demodulation or activation."""

    def __init__(self, in_channels: int, w_dim: int):
        super().__init__()
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(3, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(3))
        self.weight_gain = 1.0 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain                    # [N, Cin]
        x = x * styles.reshape(x.shape[0], -1, 1, 1)                  # [N, Cin, H, W]
        return F.conv2d(x, self.weight, self.bias)                    # [N, 3, H, W]


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator: (const or upsampling conv), conv, toRGB added to the upsampled image."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int):
        super().__init__()
        self.resolution = resolution
        if resolution == 4:
            self.const = nn.Parameter(torch.randn(out_channels, 4, 4))
            self.conv0 = None
        else:
            self.conv0 = ModulatedConv(in_channels, out_channels, w_dim, resolution, up=True)
        self.conv1 = ModulatedConv(out_channels, out_channels, w_dim, resolution)
        self.torgb = ToRGB(out_channels, w_dim)
        self.num_conv = 1 if self.conv0 is None else 2

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor,
                noise_mode: str) -> tuple[torch.Tensor, torch.Tensor]:
        # ws: [N, num_conv + 1, w_dim]; the last one drives toRGB (shared with the next block's first conv).
        if self.conv0 is None:
            x = self.const.unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)  # [N, C, 4, 4]
            x = self.conv1(x, ws[:, 0], noise_mode)
        else:
            x = self.conv0(x, ws[:, 0], noise_mode)                   # [N, C, R, R]
            x = self.conv1(x, ws[:, 1], noise_mode)
        rgb = self.torgb(x, ws[:, self.num_conv])                     # [N, 3, R, R]
        img = rgb if img is None else upsample2x(img) + rgb
        return x, img


class SynthesisNetwork(nn.Module):
    """ws -> image, from a 4x4 constant up to `resolution` with skip (toRGB) outputs."""

    def __init__(self, w_dim: int, resolution: int, channels: dict[int, int]):
        super().__init__()
        self.resolutions = [2 ** i for i in range(2, int(math.log2(resolution)) + 1)]
        self.blocks = nn.ModuleList()
        for res in self.resolutions:
            in_ch = channels[res // 2] if res > 4 else 0
            self.blocks.append(SynthesisBlock(in_ch, channels[res], w_dim, res))
        self.num_ws = sum(b.num_conv for b in self.blocks) + 1

    def forward(self, ws: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        x = img = None
        idx = 0
        for block in self.blocks:
            x, img = block(x, img, ws[:, idx: idx + block.num_conv + 1], noise_mode)
            idx += block.num_conv
        return img                                                    # [N, 3, R, R]


class Generator(nn.Module):
    """z -> image in [-1, 1] (roughly; not clamped), NCHW [N, 3, R, R]."""

    def __init__(self, z_dim: int, w_dim: int, resolution: int, channels: dict[int, int], mapping_layers: int = 8):
        super().__init__()
        self.z_dim, self.w_dim, self.img_resolution = z_dim, w_dim, resolution
        self.c_dim = 0
        self.synthesis = SynthesisNetwork(w_dim, resolution, channels)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, w_dim, self.num_ws, mapping_layers)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, noise_mode: str = "const") -> torch.Tensor:
        ws = self.mapping(z, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode)


# ---------------------------------------------------------------------------------------------------------------
# Discriminator


class DiscriminatorBlock(nn.Module):
    """Residual block: conv 3x3, then (downsample, conv 3x3), plus a downsampled 1x1 skip; sum scaled by sqrt(1/2)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = Conv2d(in_channels, in_channels, 3)
        self.conv1 = Conv2d(in_channels, out_channels, 3, down=True)
        self.skip = Conv2d(in_channels, out_channels, 1, bias=False, activation=False, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.skip(x)                                              # [N, Cout, H/2, W/2]
        x = self.conv1(self.conv0(x))                                 # [N, Cout, H/2, W/2]
        return (x + y) * math.sqrt(0.5)


class MinibatchStd(nn.Module):
    """Appends the mean standard deviation over groups of consecutive samples as one extra feature map."""

    def __init__(self, group_size: int = 4):
        super().__init__()
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n)
        if n % g:
            raise ValueError(f"batch of {n} is not divisible by the minibatch-std group size {g}")
        y = x.reshape(n // g, g, c, h, w)                             # [N/G, G, C, H, W]
        y = (y.var(dim=1, unbiased=False) + 1e-8).sqrt()              # [N/G, C, H, W]
        y = y.mean(dim=[1, 2, 3])                                     # [N/G]
        y = y.repeat_interleave(g).reshape(n, 1, 1, 1).expand(n, 1, h, w)  # [N, 1, H, W]
        return torch.cat([x, y], dim=1)                               # [N, C+1, H, W]


class Discriminator(nn.Module):
    """Image NCHW [N, 3, R, R] in [-1, 1] -> one logit per image [N, 1]."""

    def __init__(self, resolution: int, channels: dict[int, int], mbstd_group: int = 4):
        super().__init__()
        self.img_resolution = resolution
        self.fromrgb = Conv2d(3, channels[resolution], 1)
        resolutions = [2 ** i for i in range(int(math.log2(resolution)), 2, -1)]
        self.blocks = nn.ModuleList(DiscriminatorBlock(channels[r], channels[r // 2]) for r in resolutions)
        c4 = channels[4]
        self.mbstd = MinibatchStd(mbstd_group)
        self.conv = Conv2d(c4 + 1, c4, 3)
        self.fc = FullyConnected(c4 * 16, c4, activation=True)
        self.out = FullyConnected(c4, 1)

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        x = self.fromrgb(img)                                         # [N, C, R, R]
        for block in self.blocks:
            x = block(x)                                              # [N, C', R/2, R/2]
        x = self.conv(self.mbstd(x))                                  # [N, C4, 4, 4]
        x = self.fc(x.flatten(1))                                     # [N, C4]
        return self.out(x)                                            # [N, 1]


def build_networks(preset) -> tuple[Generator, Discriminator]:
    """A fresh generator and discriminator for a `synth.presets.Preset`."""
    res = preset.resolution
    channels = {2 ** i: preset.channels(2 ** i) for i in range(2, int(math.log2(res)) + 1)}
    G = Generator(preset.z_dim, preset.w_dim, res, channels, preset.mapping_layers)
    D = Discriminator(res, channels, preset.mbstd_group)
    return G, D
