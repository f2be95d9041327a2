"""Benchmark: StyleGAN2 training throughput (images/s) and achieved FLOP/s as a fraction of the matmul peak.

    .venv/bin/python bench/synth_train.py [--preset cpu64] [--precision fp32|bf16] [--seconds 60] [--threads 2]
                                          [--json OUT]

The peak is that of the precision the run computes in: fp32 torch.mm for fp32 runs, bf16 torch.mm (AMX
where the CPU has it) for bf16 runs, whose convolutions run under bfloat16 autocast.

FLOPs are counted with torch.utils.flop_counter.FlopCounterMode over one ordinary step and one step with lazy
R1 (weighted r1_interval - 1 : 1), so they include forward, backward and R1's double backward; elementwise ops
are not counted (as usual for FLOP/s figures). Images are random: throughput does not depend on content.

The machine is shared, so the matmul peak (torch.mm, 2048^3, same dtype and thread count) is probed between
training steps and the fraction is reported two ways:
- wall: training FLOP/s over wall time / the median probe's FLOP/s (both see the same contention);
- cpu:  training FLOP per CPU-second / matmul FLOP per CPU-second (time.process_time), which is what the
  code achieves on the cycles it actually got; closest to an unloaded machine, less OpenMP spin-waiting.

Then r1_interval more steps run under torch.profiler, to split the step's time between the convolution and
matrix-multiply kernels (where all counted FLOPs happen) and everything else (elementwise ops, dtype casts,
optimiser, augmentation). "kernel_fraction_of_peak" is the FLOP rate of those kernels alone against the same
median peak: the fraction the step would reach if everything else took no time, i.e. a ceiling for this
architecture at these tensor shapes.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # before torch loads libgomp; see avatar/cli.py

import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from synth.presets import get_preset
from synth.train import GanTrainer, tune_cpu_process

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness.bench import report, training_bench_parser  # noqa: E402

PROBE_N = 2048


def step_flops(trainer: GanTrainer, reals: torch.Tensor) -> tuple[float, float]:
    """FLOPs of one step without and one step with R1 (the trainer's step counter decides which)."""
    interval = trainer.preset.r1_interval
    counts = []
    for want_r1 in (False, True):
        while (trainer.step_index % interval == 0) != want_r1:
            trainer.step_index += 1
        with FlopCounterMode(display=False) as counter:
            trainer.step(reals)
        counts.append(counter.get_total_flops())
    return counts[0], counts[1]


def probe_peak(a: torch.Tensor) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one PROBE_N^3 matrix multiply in a's dtype."""
    t0, c0 = time.perf_counter(), time.process_time()
    torch.mm(a, a)
    return time.perf_counter() - t0, time.process_time() - c0


def is_flop_kernel(op_name: str) -> bool:
    """Whether a profiled op is one of the convolution / matrix-multiply kernels the FLOP counter counts."""
    return op_name.startswith("aten::") and ("conv" in op_name or op_name in ("aten::mm", "aten::addmm", "aten::bmm"))


def kernel_time_split(trainer: GanTrainer, reals: torch.Tensor, steps: int) -> tuple[float, float]:
    """(seconds in convolution and matmul kernels, seconds in all ops) over `steps` profiled training steps.
    Both are the profiler's self times on the calling thread (each op's wall time, its worker threads included)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            trainer.step(reals)
    events = prof.key_averages()
    kernels = sum(e.self_cpu_time_total for e in events if is_flop_kernel(e.key))
    total = sum(e.self_cpu_time_total for e in events)
    return kernels / 1e6, total / 1e6


def main() -> None:
    parser = training_bench_parser(__doc__, seconds=60.0)
    parser.add_argument("--preset", default="cpu64")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default=None, help="default: the preset's")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    tune_cpu_process()
    torch.manual_seed(0)
    preset = get_preset(args.preset)
    if args.precision:
        preset = dataclasses.replace(preset, precision=args.precision)
    trainer = GanTrainer(preset, channels_last=args.channels_last)
    reals = torch.rand(preset.batch_size, 3, preset.resolution, preset.resolution) * 2 - 1
    a = torch.randn(PROBE_N, PROBE_N, dtype=torch.bfloat16 if trainer.precision == "bf16" else torch.float32)
    probe_peak(a)
    flops_plain, flops_r1 = step_flops(trainer, reals)
    flops_per_step = ((preset.r1_interval - 1) * flops_plain + flops_r1) / preset.r1_interval
    probe_flops = 2 * PROBE_N**3

    steps, wall, cpu, probes = 0, 0.0, 0.0, []
    start = time.perf_counter()
    while time.perf_counter() - start < args.seconds or steps % preset.r1_interval or steps == 0:
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.step(reals)
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
        steps += 1
        probes.append(probe_peak(a))

    kernel_s, ops_s = kernel_time_split(trainer, reals, preset.r1_interval)
    kernel_flops_s = flops_per_step * preset.r1_interval / kernel_s

    peak_wall = [probe_flops / w for w, _ in probes]
    peak_cpu = probe_flops * len(probes) / sum(c for _, c in probes) * args.threads
    achieved_wall = flops_per_step * steps / wall
    achieved_cpu = flops_per_step * steps / cpu * args.threads
    result = {
        "preset": preset.name, "precision": trainer.precision, "threads": args.threads,
        "channels_last": args.channels_last,
        "batch_size": preset.batch_size, "steps": steps, "train_seconds": round(wall, 1),
        "images_per_s": round(steps * preset.batch_size / wall, 2),
        "kimg_per_hour": round(steps * preset.batch_size / wall * 3.6, 1),
        "gflop_per_image": round(flops_per_step / preset.batch_size / 1e9, 3),
        "achieved_gflop_s_wall": round(achieved_wall / 1e9, 1),
        "matmul_peak_gflop_s_wall_median": round(statistics.median(peak_wall) / 1e9, 1),
        "matmul_peak_gflop_s_wall_best": round(max(peak_wall) / 1e9, 1),
        "fraction_of_peak_wall": round(achieved_wall / statistics.median(peak_wall), 3),
        "achieved_gflop_per_cpu_s_x_threads": round(achieved_cpu / 1e9, 1),
        "matmul_gflop_per_cpu_s_x_threads": round(peak_cpu / 1e9, 1),
        "fraction_of_peak_cpu": round(achieved_cpu / peak_cpu, 3),
        "kernel_share_of_step": round(kernel_s / ops_s, 3),
        "kernel_gflop_s": round(kernel_flops_s / 1e9, 1),
        "kernel_fraction_of_peak": round(kernel_flops_s / statistics.median(peak_wall), 3),
    }
    report(result, args.json)


if __name__ == "__main__":
    main()
