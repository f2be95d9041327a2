"""Per-frame cost of the face and motion stages on one core: rendering, planning, and clip generation.

Renders every driving frame of the default avatar `--rounds` times through the identity face model (no
cross-session cache: each call does align -> face model -> blend -> label), plans idle and speaking frames,
and prints ms/frame, fps and the share of one core that 25 fps needs.
Usage: .venv/bin/python bench/render_speed.py [--rounds 5] [--generate]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from avatar.default_avatar import generate_default_clip, load_default_clip  # noqa: E402
from avatar.face import IdentityFaceModel  # noqa: E402
from avatar.motion import MotionPlanner  # noqa: E402
from avatar.render import Renderer  # noqa: E402
from avatar.types import FPS  # noqa: E402


def per_frame_ms(fn, n: int) -> list[float]:
    times = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def report(name: str, times_ms: list[float]) -> None:
    p50, mean = statistics.median(times_ms), statistics.fmean(times_ms)
    p95 = float(np.percentile(times_ms, 95))
    print(f"{name:<24} mean {mean:7.3f} ms  p50 {p50:7.3f} ms  p95 {p95:7.3f} ms  {1000 / mean:8.0f} fps  "
          f"{100 * mean * FPS / 1000:5.1f}% of a core at {FPS} fps")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="renders of every driving frame")
    parser.add_argument("--generate", action="store_true", help="also time generating the default clip")
    args = parser.parse_args()
    cv2.setNumThreads(1)

    if args.generate:
        start = time.perf_counter()
        generate_default_clip(progress=False)
        print(f"generate default clip: {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    clip = load_default_clip()
    print(f"load default clip: {time.perf_counter() - start:.2f} s, {len(clip)} frames "
          f"{clip.frame_size[0]}x{clip.frame_size[1]}, {clip.frames.nbytes / 2**20:.0f} MiB")

    start = time.perf_counter()
    renderer = Renderer(clip, IdentityFaceModel())
    print(f"renderer setup: {(time.perf_counter() - start) * 1e3:.1f} ms")
    n = len(clip) * args.rounds
    report("render (identity model)", per_frame_ms(lambda i: renderer.render(i % len(clip)), n))

    planner = MotionPlanner(clip, seed=0)
    report("plan idle, idle(1)", per_frame_ms(lambda i: planner.idle(1), 50 * FPS))
    targets = np.random.default_rng(0).uniform(0, 1, (10 * FPS, 3)).astype(np.float32)
    start = time.perf_counter()
    planner.speak(targets)
    speak_ms = (time.perf_counter() - start) * 1e3
    print(f"{'plan speech, 10 s at once':<24} {speak_ms:.1f} ms ({speak_ms / len(targets):.3f} ms/frame)")


if __name__ == "__main__":
    main()
