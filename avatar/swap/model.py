"""DeepFaceLab's two face-swap designs in one file, chosen by the preset's `arch`.

- DF: a shared encoder and inter block, one decoder per identity. Both identities go through the same encoder
  and inter block, so the latent code holds pose, expression and lighting; each decoder learns to draw its own
  person from it. Swapping: encode a driving (dst) face, decode with the subject's (src) decoder.
- LIAE: a shared encoder, one decoder, and two inter blocks: inter_ab sees both identities, inter_b only the
  driving person. A subject face is drawn from [inter_ab, inter_ab], a driving face from [inter_b, inter_ab];
  so inter_b holds what is the driving person's own, inter_ab what both share (pose, expression, light).
  Swapping: a driving face drawn from [inter_ab, inter_ab]. DFL's users find it follows the driving face's
  expression better than DF and keeps the subject's likeness less well. Here each inter block draws ae_dims
  channels (DFL's draw 2 x ae_dims), so the decoder's input is 2 x ae_dims: LIAE and DF at the same preset
  widths cost about the same (cpu64-liae 4.7 M parameters, cpu64 3.9 M), which is what bench/swap_quality.py
  compares.

Every decoder also draws a face mask. Shapes for resolution R (a multiple of 16): encoder [N, 3, R, R] ->
[N, 8e * (R/16)^2]; inter -> [N, a, R/8, R/8]; decoder ([N, a, ...] for DF, [N, 2a, ...] for LIAE) -> RGB
[N, 3, R, R] and mask [N, 1, R, R], both in [0, 1].
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


ARCHS = ("df", "liae")


class PresetError(ValueError):
    """An unknown swap preset name or an inconsistent preset."""


@dataclass(frozen=True)
class SwapPreset:
    """Every setting of one swap training run (stored in its checkpoints; the stored one wins on resume)."""

    name: str
    arch: str = "df"              # "df" or "liae" (see the module's docstring)
    resolution: int = 64          # side of the aligned faces the model sees and draws
    e_dims: int = 64              # encoder channels of the first block (x2 per block, 4 blocks)
    ae_dims: int = 256            # bottleneck width of the inter block
    d_dims: int = 64              # decoder channels of the last upscale block (x2 per block towards the bottleneck)
    d_mask_dims: int = 16         # mask branch channels of the last upscale block
    batch_size: int = 16          # faces of each identity per step
    lr: float = 5e-5              # Adam, DFL's default
    iters: int = 100_000          # default length of a run (--iters overrides)
    checkpoint_every: int = 500   # iterations between checkpoints
    preview_minutes: float = 5.0  # wall-clock minutes between preview grids
    log_every: int = 50           # iterations between log lines
    eyes_mouth_weight: float = 30.0  # extra L1 weight on eyes and mouth (DFL's eyes_mouth_prio)
    warp: bool = True             # DFL's random grid warp on the input faces
    mouth_warp: float = 0.0       # share of src faces whose mouth a mesh warp shuts or opens (augment.random_mouth)
    precision: str = "fp32"       # "fp32" or "bf16" (bfloat16 autocast of the forward pass)

    def __post_init__(self) -> None:
        if self.resolution % 16 or self.resolution < 32:
            raise PresetError(f"resolution must be a multiple of 16 and at least 32, got {self.resolution}")
        if self.checkpoint_every % self.log_every:
            raise PresetError("checkpoint_every must be a multiple of log_every, so that checkpoints fall on log rows")
        if self.arch not in ARCHS:
            raise PresetError(f"arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if self.precision not in ("fp32", "bf16"):
            raise PresetError(f"precision must be fp32 or bf16, got {self.precision!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SwapPreset:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


PRESETS = {
    # Tests: seconds on a CPU.
    "smoke": SwapPreset("smoke", resolution=32, e_dims=8, ae_dims=32, d_dims=8, d_mask_dims=4, batch_size=4,
                        iters=20, checkpoint_every=10, preview_minutes=0.5, log_every=5),
    # 2 CPU cores, about two hours. 64 px because its src faces come from the GAN's cpu64 preset (64 px), and
    # cpu128 costs 3-4 times as much a step for a little more likeness per step (README). Widths 24/128/24:
    # bench/swap_speed.py measured 2.0 steps/s of 8 + 8 faces (476 ms a step at 54% of the fp32 matmul peak,
    # 14 ms to make a batch) on 2 cores, so 14k steps take about two hours. 32/128/32 took 650 ms a step, and
    # bfloat16 autocast 11 s (no fast CPU kernels for its pixel shuffles), so fp32 at 24 channels.
    "cpu64": SwapPreset("cpu64", resolution=64, e_dims=24, ae_dims=128, d_dims=24, d_mask_dims=8,
                        batch_size=8, lr=1e-4, iters=14_000, checkpoint_every=500, preview_minutes=5.0),
    # cpu64 in DFL's LIAE design (measured against DF by bench/swap_quality.py --preset cpu64-liae).
    "cpu64-liae": SwapPreset("cpu64-liae", arch="liae", resolution=64, e_dims=24, ae_dims=128, d_dims=24,
                             d_mask_dims=8, batch_size=8, lr=1e-4, iters=14_000, checkpoint_every=500,
                             preview_minutes=5.0),
    # cpu64 with a third of its src faces given a shut or opened mouth by a mesh warp (augment.random_mouth):
    # for GAN faces whose mouths barely move (bench/swap_quality.py --preset cpu64-mouth). The `cpu` build's swap.
    "cpu64-mouth": SwapPreset("cpu64-mouth", resolution=64, e_dims=24, ae_dims=128, d_dims=24, d_mask_dims=8,
                              batch_size=8, lr=1e-4, iters=14_000, checkpoint_every=500, preview_minutes=5.0,
                              mouth_warp=1 / 3),
    # cpu64's widths at 128 px: what a larger swap gives on the GAN's 64 px faces (bench/swap_quality.py --preset
    # cpu128). A step costs about four times cpu64's, so its 14k steps would take about eight hours on 2 cores.
    "cpu128": SwapPreset("cpu128", resolution=128, e_dims=24, ae_dims=128, d_dims=24, d_mask_dims=8,
                         batch_size=8, lr=1e-4, iters=14_000, checkpoint_every=500, preview_minutes=5.0),
    # GPU presets: DFL's DF at 128 and 256 px (--device cuda).
    "gpu128": SwapPreset("gpu128", resolution=128, e_dims=64, ae_dims=256, d_dims=64, d_mask_dims=22,
                         batch_size=32, iters=80_000, checkpoint_every=2000, preview_minutes=2.0,
                         precision="bf16"),
    "gpu256": SwapPreset("gpu256", resolution=256, e_dims=80, ae_dims=512, d_dims=80, d_mask_dims=22,
                         batch_size=16, iters=80_000, checkpoint_every=2000, preview_minutes=2.0,
                         precision="bf16"),
}


def get_preset(name: str) -> SwapPreset:
    if name not in PRESETS:
        raise PresetError(f"unknown swap preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def _act(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.1)


class Downscale(nn.Module):
    """5x5 convolution with stride 2, as DFL's encoder blocks."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 5, stride=2, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _act(self.conv(x))


class Upscale(nn.Module):
    """3x3 convolution to 4x the channels, then pixel shuffle to twice the side."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout * 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(_act(self.conv(x)), 2)


class ResidualBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(self.conv1(x), 0.2)
        return F.leaky_relu(x + self.conv2(y), 0.2)


class Encoder(nn.Module):
    def __init__(self, e_dims: int):
        super().__init__()
        widths = [3, e_dims, e_dims * 2, e_dims * 4, e_dims * 8]
        self.blocks = nn.Sequential(*[Downscale(a, b) for a, b in zip(widths, widths[1:])])

    def forward(self, x: torch.Tensor) -> torch.Tensor:      # [N, 3, R, R] -> [N, 8e * (R/16)^2]
        return self.blocks(x).flatten(1)


class Inter(nn.Module):
    """Dense bottleneck, then back to a small feature map at R/8."""

    def __init__(self, in_features: int, ae_dims: int, lowest: int):
        super().__init__()
        self.lowest, self.ae_dims = lowest, ae_dims
        self.dense1 = nn.Linear(in_features, ae_dims)
        self.dense2 = nn.Linear(ae_dims, lowest * lowest * ae_dims)
        self.up = Upscale(ae_dims, ae_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:      # [N, F] -> [N, a, R/8, R/8]
        x = self.dense2(self.dense1(x)).view(-1, self.ae_dims, self.lowest, self.lowest)
        return self.up(x)


class Decoder(nn.Module):
    """Three upscales with residual blocks to RGB; a narrower branch of three upscales to the mask."""

    def __init__(self, ae_dims: int, d_dims: int, d_mask_dims: int):
        super().__init__()
        w = [ae_dims, d_dims * 4, d_dims * 2, d_dims]
        self.ups = nn.ModuleList(Upscale(a, b) for a, b in zip(w, w[1:]))
        self.res = nn.ModuleList(ResidualBlock(b) for b in w[1:])
        self.rgb = nn.Conv2d(d_dims, 3, 1)
        m = [ae_dims, d_mask_dims * 4, d_mask_dims * 2, d_mask_dims]
        self.mask_ups = nn.Sequential(*[Upscale(a, b) for a, b in zip(m, m[1:])])
        self.mask = nn.Conv2d(d_mask_dims, 1, 1)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = z
        for up, res in zip(self.ups, self.res):
            x = res(up(x))
        return torch.sigmoid(self.rgb(x)), torch.sigmoid(self.mask(self.mask_ups(z)))


class SwapModel(nn.Module):
    """DF: encoder and inter block shared by both identities, decoder_src draws the subject and decoder_dst the
    driver. LIAE: shared encoder and decoder, inter_ab for both identities and inter_b for the driver only."""

    def __init__(self, preset: SwapPreset):
        super().__init__()
        lowest = preset.resolution // 16
        features = preset.e_dims * 8 * lowest * lowest
        self.resolution, self.arch = preset.resolution, preset.arch
        self.encoder = Encoder(preset.e_dims)
        if preset.arch == "df":
            self.inter = Inter(features, preset.ae_dims, lowest)
            self.decoder_src = Decoder(preset.ae_dims, preset.d_dims, preset.d_mask_dims)
            self.decoder_dst = Decoder(preset.ae_dims, preset.d_dims, preset.d_mask_dims)
        else:
            self.inter_ab = Inter(features, preset.ae_dims, lowest)
            self.inter_b = Inter(features, preset.ae_dims, lowest)
            self.decoder = Decoder(2 * preset.ae_dims, preset.d_dims, preset.d_mask_dims)

    def draw_src(self, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Faces [N, 3, R, R] drawn as the subject from their shared code: the swap for driving faces, the
        reconstruction for subject faces. (faces, masks [N, 1, R, R]) in [0, 1]."""
        x = self.encoder(faces)
        if self.arch == "df":
            return self.decoder_src(self.inter(x))
        shared = self.inter_ab(x)
        return self.decoder(torch.cat([shared, shared], 1))

    def draw_dst(self, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Driving faces reconstructed as the driving person."""
        x = self.encoder(faces)
        if self.arch == "df":
            return self.decoder_dst(self.inter(x))
        return self.decoder(torch.cat([self.inter_b(x), self.inter_ab(x)], 1))

    def forward(self, src: torch.Tensor, dst: torch.Tensor) -> dict[str, torch.Tensor]:
        """Reconstructions of both identities: float [N, 3, R, R] faces in [0, 1] -> faces and masks."""
        src_rgb, src_mask = self.draw_src(src)
        dst_rgb, dst_mask = self.draw_dst(dst)
        return {"src": src_rgb, "src_mask": src_mask, "dst": dst_rgb, "dst_mask": dst_mask}

    def swap(self, dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Driving faces drawn as the subject: (faces [N, 3, R, R], masks [N, 1, R, R]) in [0, 1]."""
        return self.draw_src(dst)
