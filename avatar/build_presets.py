"""`avatar build --preset`: what each stage runs with, and how long it typically takes."""
from __future__ import annotations

from dataclasses import dataclass, field

from avatar.build_check import BuildError


@dataclass(frozen=True)
class BuildPreset:
    """What each stage runs with, and how long it typically takes (minutes, measured on the machine named)."""

    name: str
    face_size: int            # `synth prepare --size`
    every: int                # `synth prepare --every`
    gan: str                  # synth preset
    faces: int                # `synth sample --n`
    swap: str                 # swap preset
    swap_iters: int | None    # None: the swap preset's length
    typical: dict[str, float] = field(default_factory=dict)
    typical_on: str = "2 CPU cores"
    without_bf16: dict[str, float] = field(default_factory=dict)  # typical minutes where a CPU lacks bfloat16 units
    quality_frames: int = 150  # baked frames measured for the quality report (face detection and embedding each)


PRESETS = {
    "smoke": BuildPreset("smoke", 64, 6, "smoke", 16, "smoke", 300,
                         {"check": 1, "prepare": 2, "gan": 0.5, "sample": 0.5, "swap": 0.5, "bake": 0.5,
                          "quality": 0.5, "bundle": 0.2}, quality_frames=60),
    # The swap with mouth moves: on the same 1,000 GAN faces and 14k steps it carried the mouth better than cpu64
    # (bench/swap_quality.py on all of driving_B, 2026-12-03: mouth r 0.91 against 0.86, 100% nearer the subject
    # against 99.9%), since the GAN's faces lack shut and wide mouths (README).
    "cpu": BuildPreset("cpu", 64, 2, "cpu64", 1000, "cpu64-mouth", None,
                       # a whole build on 2 Intel Xeon cores with AMX, 2026-12-02 (GAN 44 img/s, swap 4 steps/s)
                       {"check": 1, "prepare": 3, "gan": 55, "sample": 6, "swap": 60, "bake": 1, "quality": 1,
                        "bundle": 1}, typical_on="2 CPU cores with bfloat16 units (AMX)",
                       # the stages measured on 2 AMD EPYC cores, 2026-12-01: GAN 12 img/s in fp32, and the swap
                       # (fp32 on either machine) 2.0 steps/s: those cores were slower at fp32 too
                       without_bf16={"prepare": 6, "gan": 170, "swap": 120}),
    "gpu": BuildPreset("gpu", 256, 1, "paper256", 1000, "gpu256", None,
                       {"check": 2, "prepare": 15, "gan": 280, "sample": 3, "swap": 100, "bake": 2, "quality": 1,
                        "bundle": 1}, typical_on="one H200 GPU (GAN and swap; the rest on its CPU)"),
}


def typical_minutes(preset: BuildPreset, device: str) -> tuple[dict[str, float], str]:
    """Each stage's typical minutes on `device`, and the machine they were measured on."""
    if preset.without_bf16 and device == "cpu":
        from synth.presets import native_bf16

        if not native_bf16(device):
            return {**preset.typical, **preset.without_bf16}, "2 CPU cores without bfloat16 units"
    return preset.typical, preset.typical_on


def get_preset(name: str) -> BuildPreset:
    if name not in PRESETS:
        raise BuildError(f"unknown build preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
