"""Benchmark: StyleGAN2 training throughput (images/s) and achieved FLOP/s as a fraction of the fp32 matmul peak.

    .venv/bin/python bench/synth_train.py [--preset cpu64] [--seconds 60] [--threads 2] [--profile]

The peak is the best of several large fp32 torch.mm calls on this machine with the same thread count. Training
FLOPs are counted with torch.utils.flop_counter.FlopCounterMode over one ordinary step and one step with lazy
R1 (weighted 1 : r1_interval - 1), so they include forward, backward and R1's double backward; elementwise ops
are not counted (as is usual for FLOP/s figures). Images are random: throughput does not depend on content.
"""
from __future__ import annotations

import argparse
import json
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from synth.presets import get_preset
from synth.train import GanTrainer


def matmul_peak(n: int = 4096, repeats: int = 5) -> float:
    """Best fp32 FLOP/s of an n x n x n matrix multiply."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - t0))
    return best


def step_flops(trainer: GanTrainer, reals: torch.Tensor) -> tuple[float, float]:
    """FLOPs of one step without and one step with R1 (the trainer's step counter decides which)."""
    interval = trainer.preset.r1_interval
    counts = []
    for _ in range(2):
        while (trainer.step_index % interval == 0) != (len(counts) == 1):
            trainer.step_index += 1
        with FlopCounterMode(display=False) as counter:
            trainer.step(reals)
        counts.append(counter.get_total_flops())
    return counts[0], counts[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu64")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--profile", action="store_true", help="print the top ops of a few steps")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    preset = get_preset(args.preset)
    trainer = GanTrainer(preset, channels_last=args.channels_last)
    reals = torch.rand(preset.batch_size, 3, preset.resolution, preset.resolution) * 2 - 1
    peak_before = matmul_peak()

    flops_plain, flops_r1 = step_flops(trainer, reals)
    flops_per_step = ((preset.r1_interval - 1) * flops_plain + flops_r1) / preset.r1_interval
    for _ in range(2):                                   # warm-up
        trainer.step(reals)

    if args.profile:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(preset.r1_interval):
                trainer.step(reals)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))

    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < args.seconds or steps % preset.r1_interval:
        trainer.step(reals)
        steps += 1
    elapsed = time.perf_counter() - t0
    peak = max(peak_before, matmul_peak())

    img_s = steps * preset.batch_size / elapsed
    achieved = flops_per_step * steps / elapsed
    result = {
        "preset": preset.name, "threads": args.threads, "channels_last": args.channels_last,
        "batch_size": preset.batch_size, "steps": steps, "seconds": round(elapsed, 1),
        "images_per_s": round(img_s, 2), "kimg_per_hour": round(img_s * 3.6, 1),
        "gflop_per_image": round(flops_per_step / preset.batch_size / 1e9, 3),
        "achieved_gflop_s": round(achieved / 1e9, 1), "matmul_peak_gflop_s": round(peak / 1e9, 1),
        "fraction_of_peak": round(achieved / peak, 3),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
