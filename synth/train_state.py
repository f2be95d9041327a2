"""What a GAN training run keeps across steps and resumes: every RNG state, the log tick's averages, and when a
step crosses a logging, sampling or checkpoint boundary (or the wall-clock budget)."""
from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from avatar.distributed import World, main_decides

if TYPE_CHECKING:
    from synth.train import StepStats


def rng_state(device: str) -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    # numpy's key array as a tensor: checkpoints are read with torch.load(weights_only=True), which refuses arrays
    numpy_state = (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if device.startswith("cuda"):
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: str) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(state["python"])
    if "cuda" in state and device.startswith("cuda"):
        torch.cuda.set_rng_state(state["cuda"], device)


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


class TickLog:
    """Averages step stats over one log tick into a log row (losses, mean D logits, img/s of training)."""

    def __init__(self, nimg: int):
        self.steps: list[StepStats] = []
        self.t0, self.nimg0 = time.perf_counter(), nimg

    def add(self, stats: StepStats) -> None:
        self.steps.append(stats)

    def pause(self, seconds: float) -> None:
        """Leave `seconds` (snapshots) out of the img/s figure."""
        self.t0 += seconds

    def row(self, cur_nimg: int, step_index: int) -> dict[str, Any]:
        def mean(xs: list[float]) -> float | None:
            return float(np.mean(xs)) if xs else None

        dt = time.perf_counter() - self.t0
        row = {"kimg": cur_nimg / 1000, "nimg": cur_nimg, "step": step_index,
               "loss_G": mean([s.loss_G for s in self.steps]), "loss_D": mean([s.loss_D for s in self.steps]),
               "real_score": mean([s.real_score for s in self.steps]),
               "fake_score": mean([s.fake_score for s in self.steps]),
               "r1": mean([s.r1 for s in self.steps if s.r1 is not None]),
               "img_per_s": (cur_nimg - self.nimg0) / max(dt, 1e-9), "sec_per_tick": dt}
        self.steps, self.t0, self.nimg0 = [], time.perf_counter(), cur_nimg
        return row


def crossed(every_kimg: float, prev_nimg: int, cur_nimg: int) -> bool:
    """Whether the step from prev_nimg to cur_nimg passed a multiple of `every_kimg`."""
    every = round(every_kimg * 1000)
    return every > 0 and cur_nimg // every > prev_nimg // every


def out_of_time(deadline: float | None, world: World) -> bool:
    """Whether the wall-clock budget is spent; every process follows the main one's clock."""
    if deadline is None:
        return False
    return main_decides(time.monotonic() >= deadline, world)
