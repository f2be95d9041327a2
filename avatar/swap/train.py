"""Training the swap model: src = the subject's faces, dst = the driving video's faces, in a resumable run folder.

A run folder holds options.json, log.jsonl, losses.png, grids/ (previews, rows: dst, dst->src, its mask, src, src
reconstruction), checkpoints/ and the driving video's face scan. A checkpoint holds the preset, the weights,
Adam's state and the augmentation RNG, so `--resume` continues exactly as if never stopped.
"""
from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from avatar.face import face_mask
from avatar.runs import (RunFolder, check_device, exclusive_run_folder, latest_checkpoint, list_checkpoints,
                         load_checkpoint, save_checkpoint)
from avatar.swap.augment import training_sample
from avatar.swap.colour import LabStats, lab_stats, reinhard_transfer
from avatar.swap.data import SCAN_FILE, FaceSet, cached_scan, check_usable, driving_faces, load_faces
from avatar.swap.losses import identity_loss
from avatar.swap.model import SwapModel, SwapPreset, get_preset

SEED = 0
PREVIEW_COLUMNS = 8     # = avatar.runs.GRID_COLS: one face per column in every row
LOSS_PANELS = [[("loss_src", "src"), ("loss_dst", "dst")], [("mask_src", "mask src"), ("mask_dst", "mask dst")]]


class SwapTrainingError(ValueError):
    """A swap run that cannot start or continue: bad options, or a run folder that does not match."""


@dataclass(frozen=True)
class SwapTrainOptions:
    """What `avatar swap train` was asked to do."""

    src: Path                       # FACES folder: the subject
    dst: Path                       # driving video
    out: Path                       # run folder
    preset: str = "cpu64"
    device: str = "cpu"
    resume: bool = False
    iters: int | None = None        # total iterations of the run; None: the preset's
    minutes: float | None = None    # wall-clock budget of this invocation
    dst_frames: int | None = None   # use only the first N frames of the driving video
    progress: bool = True


class PairSampler:
    """Random augmented batches of both identities from one seeded generator (its state is checkpointed)."""

    def __init__(self, src: FaceSet, dst: FaceSet, warp: bool, seed: int = SEED):
        self.src, self.dst, self.warp = src, dst, warp
        self.rng = np.random.default_rng(seed)
        hull = lambda lm: face_mask(lm, src.size, feather=0.01)  # noqa: E731
        self.src_stats = [lab_stats(im, hull(lm)) for im, lm in zip(src.images, src.landmarks)]
        self.dst_stats = [lab_stats(im, hull(lm)) for im, lm in zip(dst.images, dst.landmarks)]

    def _side(self, faces: FaceSet, n: int, recolour: bool) -> dict[str, torch.Tensor]:
        picks = self.rng.integers(0, len(faces), n)
        samples = []
        for i in picks:
            image = faces.images[i]
            if recolour:        # the subject's face in the colours of a random driving frame
                target: LabStats = self.dst_stats[int(self.rng.integers(0, len(self.dst_stats)))]
                image = reinhard_transfer(image, self.src_stats[i], target)
            samples.append(training_sample(image, faces.landmarks[i], self.rng, self.warp))
        stack = lambda key: np.stack([getattr(s, key) for s in samples])  # noqa: E731
        return {"input": _images(stack("input")), "target": _images(stack("target")),
                "mask": torch.from_numpy(stack("mask"))[:, None], "eyes_mouth": torch.from_numpy(stack("eyes_mouth"))[:, None]}

    def batch(self, n: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        return self._side(self.src, n, recolour=True), self._side(self.dst, n, recolour=False)

    def state(self) -> dict[str, Any]:
        return self.rng.bit_generator.state

    def set_state(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state


def _images(array: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, H, W] in [0, 1]."""
    return torch.from_numpy(array).permute(0, 3, 1, 2).float().div_(255)


class SwapTrainer:
    """The model, its optimiser, and one training step."""

    def __init__(self, preset: SwapPreset, device: str = "cpu"):
        torch.manual_seed(SEED)
        self.preset, self.device = preset, device
        self.model = SwapModel(preset).to(device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=preset.lr, betas=(0.5, 0.999))
        self.iter = 0

    def _autocast(self) -> torch.autocast:
        kind = "cuda" if self.device.startswith("cuda") else "cpu"
        return torch.autocast(kind, dtype=torch.bfloat16, enabled=self.preset.precision == "bf16")

    def step(self, src: dict[str, torch.Tensor], dst: dict[str, torch.Tensor]) -> dict[str, float]:
        to = lambda side: {k: v.to(self.device, non_blocking=True) for k, v in side.items()}  # noqa: E731
        src, dst = to(src), to(dst)
        with self._autocast():
            out = self.model(src["input"], dst["input"])
        w = self.preset.eyes_mouth_weight
        ls = identity_loss(out["src"].float(), out["src_mask"].float(), src["target"], src["mask"], src["eyes_mouth"], w)
        ld = identity_loss(out["dst"].float(), out["dst_mask"].float(), dst["target"], dst["mask"], dst["eyes_mouth"], w)
        total = ls["total"] + ld["total"]
        if not torch.isfinite(total):
            raise SwapTrainingError(f"the loss became {total.item()} at iteration {self.iter}; lower the lr")
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        self.opt.step()
        self.iter += 1
        return {"loss_src": ls["total"].item(), "loss_dst": ld["total"].item(),
                "mask_src": ls["mask"].item(), "mask_dst": ld["mask"].item()}

    @torch.no_grad()
    def preview(self, src: FaceSet, dst: FaceSet) -> torch.Tensor:
        """Rows dst, dst->src, dst->src mask, src, src reconstruction; float NCHW in [-1, 1]."""
        pick = lambda faces: np.linspace(0, len(faces) - 1, PREVIEW_COLUMNS).round().astype(int)  # noqa: E731
        d = _images(dst.images[pick(dst)]).to(self.device)
        s = _images(src.images[pick(src)]).to(self.device)
        self.model.eval()
        swapped, mask = self.model.swap(d)
        recon, _ = self.model.decoder_src(self.model.code(s))
        self.model.train()
        rows = [d, swapped.float(), mask.float().expand(-1, 3, -1, -1), s, recon.float()]
        return torch.cat(rows).cpu() * 2 - 1

    def state_dict(self) -> dict[str, Any]:
        return {"preset": self.preset.to_dict(), "iter": self.iter, "model": self.model.state_dict(),
                "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.iter = int(state["iter"])


def _load_run_state(out: Path) -> dict[str, Any]:
    state = load_checkpoint(latest_checkpoint(out))
    for key in ("preset", "iter", "model", "opt", "sampler", "run"):
        if key not in state:
            raise SwapTrainingError(f"{latest_checkpoint(out)} is not a swap checkpoint (no {key!r})")
    return state


def run_swap_training(options: SwapTrainOptions) -> Path:
    """Train (or continue) a swap run; returns the last checkpoint. Ctrl-C checkpoints before it stops."""
    device = check_device(options.device)
    if options.iters is not None and options.iters <= 0:
        raise SwapTrainingError("--iters must be positive")
    if options.minutes is not None and options.minutes <= 0:
        raise SwapTrainingError("--minutes must be positive")
    out = Path(options.out)
    if options.resume and not list_checkpoints(out):
        raise SwapTrainingError(f"--resume: {out} holds no checkpoint to resume from")
    if not options.resume and list_checkpoints(out):
        raise SwapTrainingError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
    state = _load_run_state(out) if options.resume else None
    preset = SwapPreset.from_dict(state["preset"]) if state else get_preset(options.preset)
    with exclusive_run_folder(out):
        return _train(options, preset, state, device)


def _run_settings(options: SwapTrainOptions, preset: SwapPreset, state: dict[str, Any] | None,
                  digest: str) -> dict[str, Any]:
    """What the run trains on and for how long: stored in every checkpoint, kept on resume."""
    if state is None:
        return {"iters": options.iters or preset.iters, "dst_frames": options.dst_frames, "dst_digest": digest}
    stored = dict(state["run"])
    if stored["dst_digest"] != digest or (options.dst_frames or stored["dst_frames"]) != stored["dst_frames"]:
        raise SwapTrainingError(f"--resume: {options.dst} (first {options.dst_frames or 'all'} frames) is not the "
                                "driving video this run was trained on; resume with the same video, or start a "
                                "new run")
    if options.iters is not None:
        stored["iters"] = options.iters
    return stored


class _StopRequest:
    """Ctrl-C during training asks for a stop after the current step (so weights and RNG stay consistent)."""

    def __init__(self) -> None:
        self.asked = False
        self._previous: Any = None

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._ask)
        return self

    def _ask(self, signum: int, frame: Any) -> None:
        self.asked = True

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _train(options: SwapTrainOptions, preset: SwapPreset, state: dict[str, Any] | None, device: str) -> Path:
    out = Path(options.out)
    dst_frames = state["run"]["dst_frames"] if state else options.dst_frames
    scan = cached_scan(options.dst, out / SCAN_FILE, dst_frames, options.progress)
    settings = _run_settings(options, preset, state, scan.digest)
    check_usable(scan, options.dst)
    src = load_faces(options.src, preset.resolution, options.progress)
    dst = driving_faces(options.dst, scan, preset.resolution, dst_frames)
    sampler = PairSampler(src, dst, preset.warp)
    trainer = SwapTrainer(preset, device)
    folder = RunFolder(out, x="iter", panels=LOSS_PANELS)
    total = settings["iters"]
    window: list[dict[str, float]] = []          # steps since the last log row
    if state is not None:
        trainer.load_state_dict(state)
        sampler.set_state(state["sampler"])
        window = list(state.get("window", []))
        folder.resume(trainer.iter, total_iters=total)
    else:
        folder.start({"preset": preset.to_dict(), "src": str(options.src), "dst": str(options.dst),
                      "dst_frames": dst_frames, "total_iters": total, "device": device, "src_faces": len(src),
                      "dst_faces": len(dst), "dst_scan": scan.counts()})

    def checkpoint() -> Path:
        return save_checkpoint({**trainer.state_dict(), "sampler": sampler.state(), "run": settings,
                                "window": window}, out, trainer.iter)

    def preview() -> None:
        folder.save_samples(trainer.preview(src, dst), trainer.iter)      # also brings losses.png up to date

    deadline = None if options.minutes is None else time.monotonic() + options.minutes * 60
    last_preview = tick = time.monotonic()
    bar = tqdm(total=total, initial=trainer.iter, desc=f"swap {preset.name}", unit="it",
               disable=not options.progress)
    path = latest_checkpoint_or_none(out)
    with _StopRequest() as stop:
        while trainer.iter < total and not stop.asked:
            window.append(trainer.step(*sampler.batch(preset.batch_size)))
            bar.update(1)
            if trainer.iter % preset.log_every == 0 or trainer.iter == total:
                now = time.monotonic()
                row = {"iter": trainer.iter, **{k: float(np.mean([w[k] for w in window])) for k in window[0]},
                       "it_per_s": round(len(window) / max(now - tick, 1e-9), 3)}
                folder.append_log(row)
                bar.set_postfix(src=f"{row['loss_src']:.3f}", dst=f"{row['loss_dst']:.3f}")
                window, tick = [], now
            if trainer.iter % preset.checkpoint_every == 0:
                path = checkpoint()
                if time.monotonic() - last_preview >= preset.preview_minutes * 60:
                    preview()
                    last_preview = time.monotonic()
            if deadline is not None and time.monotonic() >= deadline:
                break
    bar.close()
    if path is None or not path.name.endswith(f"{trainer.iter:09d}.pt"):
        path = checkpoint()
    preview()
    if stop.asked:
        print(f"\nstopped at iteration {trainer.iter}; checkpoint {path}\n"
              f"continue with: avatar swap train --src {options.src} --dst {options.dst} --out {out} --resume")
        raise KeyboardInterrupt
    return path


def latest_checkpoint_or_none(out: Path) -> Path | None:
    found = list_checkpoints(out)
    return found[-1] if found else None
