"""Training the swap model: src = the subject's faces, dst = the driving video's faces, in a resumable run folder.

A run folder holds options.json, log.jsonl, losses.png, grids/ (previews, rows: dst, dst->src, its mask, src, src
reconstruction), checkpoints/ and the driving video's face scan. A checkpoint holds the preset, the weights,
Adam's state and the iteration; batch k is drawn from a generator seeded with k, so `--resume` continues exactly
as if never stopped. Under torchrun each process trains on its share of every batch and gradients are averaged.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from avatar.distributed import (World, average_gradients, average_values, barrier, broadcast_module, close_world,
                                init_world, main_decides)
from avatar.face import face_mask
from avatar.runs import (RunFolder, check_device, exclusive_run_folder, latest_checkpoint, list_checkpoints,
                         load_checkpoint, save_checkpoint)
from avatar.swap.augment import random_mouth, training_sample
from avatar.swap.colour import LabStats, lab_stats, reinhard_transfer
from avatar.swap.data import (SCAN_FILE, FaceSet, cached_scan, check_usable, driving_faces, load_faces,
                               video_digest)
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
    """Augmented batches of both identities. Batch k of process r is drawn from its own generator, seeded with
    (SEED, r, k): a batch depends only on its number, so batches can be made ahead on worker threads and a
    resumed run draws exactly the batches it would have drawn."""

    def __init__(self, src: FaceSet, dst: FaceSet, warp: bool, rank: int = 0, seed: int = SEED, mouth: float = 0.0):
        self.src, self.dst, self.warp, self.rank, self.seed, self.mouth = src, dst, warp, rank, seed, mouth
        hull = lambda lm: face_mask(lm, src.size, feather=0.01)  # noqa: E731
        self.src_stats = [lab_stats(im, hull(lm)) for im, lm in zip(src.images, src.landmarks)]
        self.dst_stats = [lab_stats(im, hull(lm)) for im, lm in zip(dst.images, dst.landmarks)]

    def _side(self, faces: FaceSet, n: int, recolour: bool, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        picks = rng.integers(0, len(faces), n)
        samples = []
        for i in picks:
            image, landmarks = faces.images[i], faces.landmarks[i]
            if recolour:        # the subject's face in the colours of a random driving frame
                target: LabStats = self.dst_stats[int(rng.integers(0, len(self.dst_stats)))]
                image = reinhard_transfer(image, self.src_stats[i], target)
                if self.mouth and rng.random() < self.mouth:     # (no draw at all without mouth moves)
                    image, landmarks = random_mouth(image, landmarks, rng)
            samples.append(training_sample(image, landmarks, rng, self.warp))
        stack = lambda key: np.stack([getattr(s, key) for s in samples])  # noqa: E731
        return {"input": _images(stack("input")), "target": _images(stack("target")),
                "mask": torch.from_numpy(stack("mask"))[:, None], "eyes_mouth": torch.from_numpy(stack("eyes_mouth"))[:, None]}

    def batch(self, index: int, n: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Batch number `index`: n augmented src faces and n dst faces."""
        rng = np.random.default_rng([self.seed, self.rank, index])
        return self._side(self.src, n, True, rng), self._side(self.dst, n, False, rng)


class Prefetcher:
    """Makes the next `depth` batches on `workers` threads while the model trains on the current one (OpenCV and
    numpy release the GIL, so a GPU is not left waiting for augmentation)."""

    def __init__(self, make: Callable[[int], Any], workers: int, depth: int):
        self.make, self.depth = make, depth
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="swap-batches")
        self.pending: dict[int, Future] = {}

    def get(self, index: int) -> Any:
        for k in range(index, index + self.depth):
            if k not in self.pending:
                self.pending[k] = self.pool.submit(self.make, k)
        return self.pending.pop(index).result()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _images(array: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, H, W] in [0, 1]."""
    return torch.from_numpy(array).permute(0, 3, 1, 2).float().div_(255)


LOSS_KEYS = ("loss_src", "loss_dst", "mask_src", "mask_dst")


class SwapTrainer:
    """The model, its optimiser, and one training step (gradients averaged over torchrun's processes)."""

    def __init__(self, preset: SwapPreset, world: World = World()):
        torch.manual_seed(SEED)
        self.preset, self.world, self.device = preset, world, world.device
        self.model = SwapModel(preset).to(self.device)
        broadcast_module(self.model, world)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=preset.lr, betas=(0.5, 0.999))
        self.iter = 0

    def _autocast(self) -> torch.autocast:
        kind = "cuda" if self.device.startswith("cuda") else "cpu"
        return torch.autocast(kind, dtype=torch.bfloat16, enabled=self.preset.precision == "bf16")

    def step(self, src: dict[str, torch.Tensor], dst: dict[str, torch.Tensor]) -> torch.Tensor:
        """One step; returns this process's losses (LOSS_KEYS order) as a tensor on the device, unsynchronised."""
        to = lambda side: {k: v.to(self.device, non_blocking=True) for k, v in side.items()}  # noqa: E731
        src, dst = to(src), to(dst)
        with self._autocast():
            out = self.model(src["input"], dst["input"])
        w = self.preset.eyes_mouth_weight
        ls = identity_loss(out["src"].float(), out["src_mask"].float(), src["target"], src["mask"], src["eyes_mouth"], w)
        ld = identity_loss(out["dst"].float(), out["dst_mask"].float(), dst["target"], dst["mask"], dst["eyes_mouth"], w)
        self.opt.zero_grad(set_to_none=True)
        (ls["total"] + ld["total"]).backward()
        average_gradients(list(self.model.parameters()), self.world)
        self.opt.step()
        self.iter += 1
        return torch.stack([ls["total"], ld["total"], ls["mask"], ld["mask"]]).detach()

    @torch.no_grad()
    def preview(self, src: FaceSet, dst: FaceSet) -> torch.Tensor:
        """Rows dst, dst->src, dst->src mask, src, src reconstruction; float NCHW in [-1, 1]."""
        pick = lambda faces: np.linspace(0, len(faces) - 1, PREVIEW_COLUMNS).round().astype(int)  # noqa: E731
        d = _images(dst.images[pick(dst)]).to(self.device)
        s = _images(src.images[pick(src)]).to(self.device)
        self.model.eval()
        swapped, mask = self.model.swap(d)
        recon, _ = self.model.draw_src(s)
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
    for key in ("preset", "iter", "model", "opt", "run"):
        if key not in state:
            raise SwapTrainingError(f"{latest_checkpoint(out)} is not a swap checkpoint (no {key!r})")
    return state


def run_swap_training(options: SwapTrainOptions) -> Path:
    """Train (or continue) a swap run; returns the last checkpoint. Ctrl-C checkpoints before it stops.

    Under torchrun each process trains on its share of every batch and the gradients are averaged; only the main
    process (rank 0) locks and writes the run folder.
    """
    device = check_device(options.device)
    if options.iters is not None and options.iters <= 0:
        raise SwapTrainingError("--iters must be positive")
    if options.minutes is not None and options.minutes <= 0:
        raise SwapTrainingError("--minutes must be positive")
    out = Path(options.out)
    main_process = int(os.environ.get("RANK", "0")) == 0
    # the folder's checkpoints are looked at under its lock: a training that ends (and unlocks) between a look
    # and the lock would otherwise have its run started over, or resumed from a checkpoint it has since passed
    with exclusive_run_folder(out) if main_process else contextlib.nullcontext():
        if options.resume and not list_checkpoints(out):
            raise SwapTrainingError(f"--resume: {out} holds no checkpoint to resume from")
        if not options.resume and list_checkpoints(out):
            raise SwapTrainingError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
        state = _load_run_state(out) if options.resume else None
        preset = SwapPreset.from_dict(state["preset"]) if state else get_preset(options.preset)
        created_group = not torch.distributed.is_initialized()
        world = init_world(device)
        try:
            return _train(options, preset, state, world)
        finally:
            if created_group:
                close_world(world)


def _run_settings(options: SwapTrainOptions, preset: SwapPreset, state: dict[str, Any] | None,
                  digest: str, src_digest: str) -> dict[str, Any]:
    """What the run trains on and for how long: stored in every checkpoint, kept on resume (checked before the
    driving video is scanned, so that another video never replaces the run's scan)."""
    if state is None:
        return {"iters": options.iters or preset.iters, "dst_frames": options.dst_frames, "dst_digest": digest,
                "src_digest": src_digest}
    stored = dict(state["run"])
    if stored["dst_digest"] != digest or (options.dst_frames or stored["dst_frames"]) != stored["dst_frames"]:
        raise SwapTrainingError(f"--resume: {options.dst} (first {options.dst_frames or 'all'} frames) is not the "
                                "driving video this run was trained on; resume with the same video, or start a "
                                "new run")
    if stored.setdefault("src_digest", src_digest) != src_digest:     # runs from before it was stored: taken
        raise SwapTrainingError(f"--resume: the faces in {options.src} are not the ones this run was trained on; "
                                "resume with the same FACES folder, or start a new run")
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


def _batch_workers(world: World) -> int:
    """Threads making batches: one beside a CPU run (its cores are busy training), several for a GPU."""
    if not world.device.startswith("cuda"):
        return 1
    return max(1, min(8, (os.cpu_count() or 1) // world.size - 1))


def _scan_once(video: Path, cache: Path, dst_frames: int | None, progress: bool, world: World):
    """The driving video's face scan: the main process scans it once and caches it, the others then read it."""
    if not world.is_main:
        barrier(world)
    scan = cached_scan(video, cache, dst_frames, progress)
    if world.is_main:
        barrier(world)
    return scan


def _open_folder(folder: RunFolder, resuming: bool, iteration: int, options: dict[str, Any]) -> None:
    if resuming:
        folder.resume(iteration, total_iters=options["total_iters"])
    else:
        folder.start(options)


def _log_row(window: list[torch.Tensor], iteration: int, since: float, world: World, folder: RunFolder, bar) -> float:
    """One log row: the window's losses averaged over its steps and all processes (a loss that is no longer
    finite stops the run before it is checkpointed); returns when the row was made (the next window's start)."""
    losses = average_values(torch.stack(window).mean(0), world).tolist()
    if not all(np.isfinite(losses)):
        raise SwapTrainingError(f"the loss became {losses} by iteration {iteration}; the run stops before "
                                "checkpointing it. Its last checkpoint is kept, but a resume would repeat the same "
                                "steps: start a new run in another --out")
    now = time.monotonic()
    row = {"iter": iteration, **dict(zip(LOSS_KEYS, losses)), "it_per_s": round(len(window) / max(now - since, 1e-9), 3)}
    if world.is_main:
        folder.append_log(row)
    bar.set_postfix(src=f"{row['loss_src']:.3f}", dst=f"{row['loss_dst']:.3f}")
    return now


def _preview(trainer: SwapTrainer, folder: RunFolder, src, dst, world: World) -> None:
    if world.is_main:
        folder.save_samples(trainer.preview(src, dst), trainer.iter)      # also brings losses.png up to date


def _stopped(options: SwapTrainOptions, world: World, iteration: int, path: Path | None) -> None:
    """After Ctrl-C (checkpointed): say how to continue (the same launcher and device), and end as interrupted."""
    launcher = f"torchrun --nproc_per_node {world.size} -m avatar.cli" if world.size > 1 else "avatar"
    device = f" --device {options.device}" if options.device != "cpu" else ""
    if world.is_main:
        print(f"\nstopped at iteration {iteration}; checkpoint {path}\n"
              f"continue with: {launcher} swap train --src {options.src} --dst {options.dst} --out {options.out}"
              f"{device} --resume")
    raise KeyboardInterrupt


def _fit_world(preset: SwapPreset, world: World) -> None:
    """The batch splits evenly over the processes; on a GPU, cuDNN picks its fastest kernels (fixed shapes)."""
    if preset.batch_size % world.size:
        raise SwapTrainingError(f"batch size {preset.batch_size} does not split over {world.size} processes")
    if world.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True


def _train(options: SwapTrainOptions, preset: SwapPreset, state: dict[str, Any] | None, world: World) -> Path:
    out = Path(options.out)
    _fit_world(preset, world)
    dst_frames = state["run"]["dst_frames"] if state else options.dst_frames
    progress = options.progress and world.is_main
    src = load_faces(options.src, preset.resolution, progress)
    settings = _run_settings(options, preset, state, video_digest(options.dst), src.digest())
    scan = _scan_once(options.dst, out / SCAN_FILE, dst_frames, progress, world)
    check_usable(scan, options.dst)
    dst = driving_faces(options.dst, scan, preset.resolution, dst_frames)
    sampler = PairSampler(src, dst, preset.warp, world.rank, mouth=preset.mouth_warp)
    trainer = SwapTrainer(preset, world)
    folder = RunFolder(out, x="iter", panels=LOSS_PANELS)
    total = settings["iters"]
    window: list[torch.Tensor] = []          # each step's losses since the last log row (main process's)
    if state is not None:
        trainer.load_state_dict(state)
        window = [torch.tensor([w[k] for k in LOSS_KEYS], device=world.device) for w in state.get("window", [])]
    if world.is_main:
        _open_folder(folder, state is not None, trainer.iter, {
            "preset": preset.to_dict(), "src": str(options.src), "dst": str(options.dst), "dst_frames": dst_frames,
            "total_iters": total, "device": world.device, "world_size": world.size, "src_faces": len(src),
            "dst_faces": len(dst), "dst_scan": scan.counts()})

    def checkpoint() -> Path | None:           # with the losses not logged yet, so that a resume logs them
        rows = [dict(zip(LOSS_KEYS, w.tolist())) for w in window]
        return save_checkpoint({**trainer.state_dict(), "run": settings, "window": rows}, out, trainer.iter) \
            if world.is_main else None

    per_process = preset.batch_size // world.size
    batches = Prefetcher(lambda k: sampler.batch(k, per_process), _batch_workers(world), depth=3)
    deadline = None if options.minutes is None else time.monotonic() + options.minutes * 60
    last_preview = tick = time.monotonic()
    bar = tqdm(total=total, initial=trainer.iter, desc=f"swap {preset.name}", unit="it", disable=not progress)
    path = (list_checkpoints(out) or [None])[-1]   # what a stop before the first new checkpoint returns
    try:
        with _StopRequest() as stop:
            while trainer.iter < total:
                window.append(trainer.step(*batches.get(trainer.iter)))
                bar.update(1)
                if trainer.iter % preset.log_every == 0 or trainer.iter == total:
                    window, tick = [], _log_row(window, trainer.iter, tick, world, folder, bar)
                if trainer.iter % preset.checkpoint_every == 0:
                    path = checkpoint() or path
                    if time.monotonic() - last_preview >= preset.preview_minutes * 60:
                        _preview(trainer, folder, src, dst, world)
                        last_preview = time.monotonic()
                out_of_time = deadline is not None and time.monotonic() >= deadline
                if main_decides(stop.asked or out_of_time, world):
                    break
    finally:
        batches.close()
        bar.close()
    if path is None or not path.name.endswith(f"{trainer.iter:09d}.pt"):
        path = checkpoint() or path
    _preview(trainer, folder, src, dst, world)
    barrier(world)
    if stop.asked:
        _stopped(options, world, trainer.iter, path)
    return path or latest_checkpoint(out)
