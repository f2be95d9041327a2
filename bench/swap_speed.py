"""Benchmark: face-swap training speed per preset (iterations/s, faces/s, FLOP/s against the matmul peak) and
bake speed (driving frames/s through the merge).

    .venv/bin/python bench/swap_speed.py [--presets smoke,cpu64] [--seconds 30] [--threads 2] [--device cpu]
                                         [--json OUT]

Training: steps on random faces (speed does not depend on content) plus, measured apart, the cost of making
a batch (augmentation: warp, similarity, colour transfer, masks) on faces of the built-in avatar. FLOPs are
counted with torch.utils.flop_counter.FlopCounterMode over one step (forward and backward of both
identities); the peak is torch.mm of 2048^3 in float32 on the same threads, probed between steps (median).
Merge: the built-in avatar's first 100 frames (512 px, decoded and landmarked already) through an untrained
model of each preset, merge included (temporal smoothing, colour transfer, blend); the model's weights do not
change its cost. Bake: `bake_clip` end to end on the first 100 frames of the shared driving_B footage (360 px):
decoding, the face scan (dlib), the model and the merge, as `avatar swap bake` and `avatar build` pay it.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from avatar.align import align_face
from avatar.distributed import World
from avatar.default_avatar import load_default_clip
from avatar.swap.data import FaceSet
from avatar.swap.merge import MergeOptions, merge_clip
from avatar.swap.model import get_preset
from avatar.swap.predictor import SwapFaceModel
from avatar.swap.video import bake_clip
from avatar.swap.train import PairSampler, SwapTrainer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness.bench import report, training_bench_parser  # noqa: E402

PROBE_N = 2048
DRIVING = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "driving_B_man_outdoor_35s.mp4"
BAKE_FRAMES = 100


def random_batch(n: int, r: int) -> dict[str, torch.Tensor]:
    return {"input": torch.rand(n, 3, r, r), "target": torch.rand(n, 3, r, r),
            "mask": torch.rand(n, 1, r, r), "eyes_mouth": torch.rand(n, 1, r, r)}


def probe_peak(a: torch.Tensor) -> float:
    t0 = time.perf_counter()
    torch.mm(a, a)
    return 2 * PROBE_N**3 / (time.perf_counter() - t0)


def bench_preset(name: str, seconds: float, device: str, clip) -> dict:
    preset = get_preset(name)
    r, n = preset.resolution, preset.batch_size
    trainer = SwapTrainer(preset, World(device=device))
    src, dst = random_batch(n, r), random_batch(n, r)
    trainer.step(src, dst)
    with FlopCounterMode(display=False) as counter:
        trainer.step(src, dst)
    flops = counter.get_total_flops()
    a = torch.randn(PROBE_N, PROBE_N)
    steps, wall, peaks = 0, 0.0, []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or steps < 3:
        t0 = time.perf_counter()
        trainer.step(src, dst)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        wall += time.perf_counter() - t0
        steps += 1
        if device == "cpu":
            peaks.append(probe_peak(a))

    faces = [align_face(clip.frames[i], clip.landmarks[i], r) for i in range(0, len(clip), max(1, len(clip) // 64))]
    face_set = FaceSet(np.stack([f.image for f in faces]), np.stack([f.landmarks for f in faces]))
    sampler = PairSampler(face_set, face_set, preset.warp, mouth=preset.mouth_warp)
    t0 = time.perf_counter()
    batches = 5
    for k in range(batches):
        sampler.batch(k, n)
    batch_s = (time.perf_counter() - t0) / batches

    predictor = SwapFaceModel(trainer.model, device)
    frames = list(clip.frames[:100])
    t0 = time.perf_counter()
    merge_clip(frames, clip.landmarks[:100], predictor, 256, MergeOptions())
    merge_fps = len(frames) / (time.perf_counter() - t0)
    bake_fps = None
    if DRIVING.is_file():
        with tempfile.TemporaryDirectory() as scratch:
            t0 = time.perf_counter()
            baked = bake_clip(DRIVING, predictor, Path(scratch) / "scan.npz", BAKE_FRAMES, progress=False)
            bake_fps = round(BAKE_FRAMES / (time.perf_counter() - t0), 1)
        assert len(baked) > 0

    step_s = wall / steps
    result = {"preset": name, "resolution": r, "batch_per_identity": n, "steps": steps,
              "step_ms": round(step_s * 1000, 1), "batch_making_ms": round(batch_s * 1000, 1),
              "iters_per_s": round(1 / (step_s + batch_s), 2),
              "faces_per_s": round(2 * n / (step_s + batch_s), 1),
              "gflop_per_iter": round(flops / 1e9, 2), "achieved_gflop_s": round(flops / step_s / 1e9, 1),
              "merge_frames_per_s": round(merge_fps, 1), "bake_frames_per_s": bake_fps,
              "parameters_m": round(sum(p.numel() for p in trainer.model.parameters()) / 1e6, 2)}
    if peaks:
        peak = statistics.median(peaks)
        result |= {"matmul_peak_gflop_s": round(peak / 1e9, 1), "fraction_of_peak": round(flops / step_s / peak, 3)}
    return result


def main() -> None:
    parser = training_bench_parser(__doc__, seconds=30.0)
    parser.add_argument("--presets", default="smoke,cpu64")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clip = load_default_clip()
    results = [bench_preset(name, args.seconds, args.device, clip) for name in args.presets.split(",")]
    report(results, args.json)


if __name__ == "__main__":
    main()
