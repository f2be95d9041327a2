"""Named StyleGAN2 training presets: one frozen dataclass holds every setting a run needs (stored in checkpoints).

Channel widths follow StyleGAN2: a block at resolution r has min(channel_base // r, channel_max) channels.

- `smoke`: a few seconds on a CPU, for tests: 32 px, 8 to 32 channels, 8 steps of 8 images.
- `cpu64`: 64 px on 2 CPU cores in about an hour (`bench/synth_train.py` measures it). The budget is set by
  compute: one training image costs G forward + backward, D forward + input-backward on the fake for G's
  loss, and D forward + backward on a real and a fake, about 3 G + 8 D forward passes. At the 40-60 GFLOP/s
  that 2 shared cores sustain, an hour is ~2e14 FLOP, and a single subject's few thousand nearly identical
  frames need a few tens of kimg to show a recognisable face, so an image may cost ~4 GFLOP. Cost grows
  with r^2 * C^2, so the 64 and 32 px blocks get 32 and 64 channels and the 4-16 px blocks 128
  (channel_base=2048, channel_max=128): 4.1 GFLOP per image, G and D 1.1 M parameters each. Every width is a
  multiple of 32 (oneDNN's AVX-512 convolutions block channels by 16; 16-channel layers ran at a third of
  the rate of 32-channel ones), and batch 16 keeps each convolution large enough to run at ~60% of the
  matmul peak while giving ~2,000+ optimiser steps in the hour. R1 gamma follows the StyleGAN2-ADA
  heuristic 0.0002 * r^2 / batch; the EMA half-life ramps up (0.05) as short small-data runs need.
  Precision "auto": on CPUs with AMX or AVX512-BF16 (and on GPUs with bfloat16) the forward passes run under
  bfloat16 autocast, while weights, Adam state, losses and the EMA stay float32; the depthwise FIR filters
  stay float32, as their bfloat16 backward has no fast CPU kernel. Measured (bench/synth_train.py, 2 threads,
  Sapphire Rapids): 20-26 img/s in float32, 32 img/s in bfloat16, so 120 kimg take about an hour;
  fewer while other work shares the cores (use run_training's `minutes` budget for a fixed hour).
- `paper256`: the paper's setting: official StyleGAN2 config-f at 256 px (channel_base 32768, max 512, 8-layer
  mapping, batch 32, gamma 10, EMA 10 kimg, 500 kimg as the paper trained), for a GPU via `--device cuda`.
All presets add DiffAugment "color,translation,cutout" (Zhao et al. 2020), which small datasets need.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


PRECISIONS = ("fp32", "bf16", "auto")


class PresetError(ValueError):
    """An unknown preset name or an inconsistent preset."""


@dataclass(frozen=True)
class Preset:
    """Every setting of one training run: architecture, optimisation, regularisation, schedule."""

    name: str
    resolution: int                          # output side in pixels, a power of two >= 8
    z_dim: int = 512                         # latent z size
    w_dim: int = 512                         # intermediate latent w size
    mapping_layers: int = 8                  # FC layers in the mapping network
    channel_base: int = 32768                # channels at resolution r: min(channel_base // r, channel_max)
    channel_max: int = 512
    mbstd_group: int = 4                     # minibatch-std group size in D
    batch_size: int = 32                     # images per optimiser step, over all processes
    g_lr: float = 0.002
    d_lr: float = 0.002
    betas: tuple[float, float] = (0.0, 0.99)
    r1_gamma: float = 10.0                   # R1 weight
    r1_interval: int = 16                    # lazy R1: every this many minibatches, scaled by the interval
    ema_kimg: float = 10.0                   # EMA half-life of G_ema in thousands of images
    ema_rampup: float | None = None          # if set, half-life <= ema_rampup * images seen so far
    style_mixing_prob: float = 0.9
    augment: str = "color,translation,cutout"  # DiffAugment policy, "" for none
    mirror: bool = True                      # random horizontal flips of the real images
    total_kimg: float = 500.0                # training length in thousands of real images shown to D
    log_kimg: float = 1.0                    # one log line (and progress update) per this many kimg
    sample_kimg: float = 10.0                # sample grid from fixed z every this many kimg
    checkpoint_kimg: float = 10.0            # checkpoint every this many kimg
    seed: int = 0
    precision: str = "fp32"                  # "fp32", "bf16" (forward passes under bfloat16 autocast) or "auto"

    def __post_init__(self) -> None:
        res = self.resolution
        if res < 8 or res & (res - 1):
            raise PresetError(f"preset {self.name}: resolution must be a power of two >= 8, got {res}")
        if self.precision not in PRECISIONS:
            raise PresetError(f"preset {self.name}: precision must be one of {', '.join(PRECISIONS)}, "
                              f"got {self.precision!r}")
        if self.batch_size < 1 or self.r1_interval < 1:
            raise PresetError(f"preset {self.name}: batch_size and r1_interval must be positive")

    def channels(self, res: int) -> int:
        """Feature maps of the blocks working at resolution `res`."""
        return min(self.channel_base // res, self.channel_max)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Preset:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in values.items() if k in known}
        if "betas" in values:
            values["betas"] = tuple(values["betas"])
        return cls(**values)


PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        name="smoke", resolution=32, z_dim=32, w_dim=32, mapping_layers=2, channel_base=256, channel_max=32,
        batch_size=8, g_lr=0.002, d_lr=0.002, r1_gamma=0.1, r1_interval=4, ema_kimg=0.01, ema_rampup=0.05,
        total_kimg=0.064, log_kimg=0.016, sample_kimg=0.032, checkpoint_kimg=0.032),
    "cpu64": Preset(
        name="cpu64", resolution=64, z_dim=128, w_dim=128, mapping_layers=4, channel_base=2048, channel_max=128,
        batch_size=16, g_lr=0.0025, d_lr=0.0025, r1_gamma=0.05, r1_interval=16, ema_kimg=5.0, ema_rampup=0.05,
        total_kimg=120.0, log_kimg=0.5, sample_kimg=5.0, checkpoint_kimg=2.0, precision="auto"),
    "paper256": Preset(
        name="paper256", resolution=256, z_dim=512, w_dim=512, mapping_layers=8, channel_base=32768,
        channel_max=512, batch_size=32, g_lr=0.002, d_lr=0.002, r1_gamma=10.0, r1_interval=16, ema_kimg=10.0,
        ema_rampup=None, total_kimg=500.0, log_kimg=4.0, sample_kimg=20.0, checkpoint_kimg=20.0),
}


def native_bf16(device: str) -> bool:
    """Whether `device` multiplies bfloat16 matrices in hardware: a GPU that supports it, or a CPU with AMX or
    AVX512-BF16 (elsewhere oneDNN emulates bfloat16, slower than float32)."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.is_bf16_supported()
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(precision: str, device: str) -> str:
    """The precision a run uses: "auto" becomes "bf16" where the device has native bfloat16, else "fp32"."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def get_preset(name: str) -> Preset:
    """The named preset; raise PresetError listing the known names otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise PresetError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
