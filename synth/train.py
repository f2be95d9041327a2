"""StyleGAN2 training: non-saturating logistic loss, lazy R1, EMA generator, style mixing, DiffAugment.

A run folder holds options.json, log.jsonl (one line per log tick), losses.png, grids/ (samples of the EMA
generator from fixed z every `sample_kimg`) and checkpoints/ (written atomically every `checkpoint_kimg` with
the preset and every RNG state, so `resume=True` continues bit-for-bit). Under torchrun every process trains
on its own shard of the data with its own seed, gradients are averaged, and only rank 0 writes.

    python -m synth.train DATASET --preset cpu64 --out runs/x            # one process
    torchrun --nproc_per_node 2 -m synth.train DATASET --preset smoke --out runs/x
"""
from __future__ import annotations

import os

# Sleeping OpenMP waiters, for `python -m synth.train` and torchrun (why: avatar/cli.py, which sets it for `avatar`).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import contextlib
import copy
import ctypes
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from avatar.distributed import (World, all_gather_objects, average_gradients, barrier, broadcast_module, close_world,
                                init_world)
from avatar.runs import (GRID_COLS, RunFolder, check_device, exclusive_run_folder, latest_checkpoint, latest_step,
                         list_checkpoints, load_checkpoint, save_checkpoint)
from synth.augment import diff_augment, parse_policy
from synth.batches import ImageSampler, TrainingError, load_training_images, to_float_batch
from synth.networks import Discriminator, Generator, build_networks
from synth.presets import Preset, get_preset, resolve_precision
from synth.train_state import TickLog, crossed, out_of_time, rng_state, seed_all, set_rng_state

GRID_ROWS = 4
CHECKPOINT_VERSION = 1
# losses.png: the losses, then the mean D logits, against kimg
LOSS_PANELS = [[("loss_G", "G loss"), ("loss_D", "D loss"), ("r1", "R1 penalty")],
               [("real_score", "D(real)"), ("fake_score", "D(fake)")]]


# ---------------------------------------------------------------------------------------------------------------
# Loss pieces and EMA, small enough to test on their own


def r1_penalty(real_logits: torch.Tensor, reals: torch.Tensor, gamma: float) -> torch.Tensor:
    """R1: gamma/2 * E[ ||d D(x) / d x||^2 ] over real images x (reals must require grad); differentiable."""
    (grads,) = torch.autograd.grad(real_logits.sum(), reals, create_graph=True)   # [N, C, H, W]
    return grads.square().sum(dim=[1, 2, 3]).mean() * (gamma / 2)


def discriminator_loss(fake_logits: torch.Tensor, real_logits: torch.Tensor, reals: torch.Tensor, r1_gamma: float,
                       r1_weight: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(total, logistic, r1): logistic = E[softplus(D(fake))] + E[softplus(-D(real))]; total adds r1_weight * R1.

    R1 is computed only when r1_weight and r1_gamma are non-zero (else None), and then needs reals.requires_grad.
    """
    logistic = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
    if r1_weight == 0 or r1_gamma == 0:
        return logistic, logistic, None
    r1 = r1_penalty(real_logits, reals, r1_gamma)
    return logistic + r1 * r1_weight, logistic, r1


def ema_beta(cur_nimg: int, batch_size: int, ema_kimg: float, ema_rampup: float | None) -> float:
    """Per-step decay of G_ema: half-life ema_kimg thousand images, capped at ema_rampup * images seen."""
    ema_nimg = ema_kimg * 1000
    if ema_rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
    return 0.5 ** (batch_size / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(G_ema: torch.nn.Module, G: torch.nn.Module, beta: float) -> None:
    """p_ema <- p + (p_ema - p) * beta for parameters; buffers (w_avg, const noise) are copied."""
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.copy_(p.lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)


def lazy_adam(params, lr: float, betas: tuple[float, float], interval: int) -> torch.optim.Adam:
    """Adam with lr and betas adjusted for a regulariser applied every `interval` steps (StyleGAN2, App. B)."""
    c = interval / (interval + 1)
    return torch.optim.Adam(params, lr=lr * c, betas=(betas[0] ** c, betas[1] ** c), eps=1e-8, fused=True)


# ---------------------------------------------------------------------------------------------------------------
# One training step


@dataclass
class StepStats:
    """Losses and mean D logits of one optimiser step (r1 is None on steps without R1)."""

    loss_G: float
    loss_D: float
    real_score: float
    fake_score: float
    r1: float | None


class GanTrainer:
    """Owns G, D, G_ema and their optimisers; `step(reals)` does one G update, one D update and the EMA."""

    def __init__(self, preset: Preset, world: World = World(), channels_last: bool = False):
        self.preset, self.world = preset, world
        self.device = world.device
        parse_policy(preset.augment)
        G, D = build_networks(preset)
        self.G: Generator = G.to(self.device)
        self.D: Discriminator = D.to(self.device)
        self.G_ema: Generator = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            for net in (self.G, self.D, self.G_ema):
                net.to(memory_format=torch.channels_last)
        broadcast_module(self.G, world)
        broadcast_module(self.D, world)
        broadcast_module(self.G_ema, world)
        # G has no lazy regulariser here (no path-length penalty), so plain Adam; D gets the lazy-R1 correction.
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=preset.g_lr, betas=preset.betas, eps=1e-8, fused=True)
        self.opt_D = lazy_adam(self.D.parameters(), preset.d_lr, preset.betas, preset.r1_interval)
        self.cur_nimg = 0          # real images shown to D so far, over all processes
        self.step_index = 0
        self.device_type = torch.device(self.device).type
        self.precision = resolve_precision(preset.precision, self.device)

    def _autocast(self) -> torch.autocast:
        """bfloat16 autocast for the forward passes when the preset asks for it (parameters, optimiser state,
        losses and the EMA stay float32); a no-op context for fp32 presets."""
        return torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, self.preset.augment) if self.preset.augment else x

    def _ws(self, n: int) -> torch.Tensor:
        """w's for n random z, with style mixing: from a random layer on, the w of a second z."""
        p = self.preset
        ws = self.G.mapping(torch.randn(n, p.z_dim, device=self.device), update_w_avg=True)  # [N, num_ws, w]
        if p.style_mixing_prob > 0 and torch.rand([]).item() < p.style_mixing_prob:
            cutoff = int(torch.randint(1, ws.shape[1], []).item())
            ws2 = self.G.mapping(torch.randn(n, p.z_dim, device=self.device), update_w_avg=False)
            ws = torch.cat([ws[:, :cutoff], ws2[:, cutoff:]], dim=1)
        return ws

    def step(self, reals: torch.Tensor) -> StepStats:
        """Train on one per-process minibatch of real images, float NCHW [B, 3, R, R] in [-1, 1]."""
        p = self.preset
        b = reals.shape[0]
        do_r1 = p.r1_gamma > 0 and self.step_index % p.r1_interval == 0

        # G: non-saturating logistic loss, softplus(-D(G(z))).
        ws = self._ws(b)                                    # the small mapping MLP stays in float32
        with self._autocast():
            fakes = self.G.synthesis(ws, noise_mode="random").contiguous(memory_format=self.memory_format)
            self.D.requires_grad_(False)
            gen_logits = self.D(self._augment(fakes)).float()                    # [B, 1]
        loss_G = F.softplus(-gen_logits).mean()
        self.opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        average_gradients(list(self.G.parameters()), self.world)
        self.opt_G.step()
        self.D.requires_grad_(True)

        # D: softplus(D(fake)) + softplus(-D(real)) on one batch [fakes; reals], plus R1 every r1_interval steps.
        reals = reals.detach().contiguous(memory_format=self.memory_format).requires_grad_(do_r1)
        with self._autocast():
            logits = self.D(self._augment(torch.cat([fakes.detach(), reals]))).float()  # [2B, 1]
        fake_logits, real_logits = logits[:b], logits[b:]
        # Lazy R1: on every r1_interval-th step only, weighted by the interval to keep its average strength.
        total_D, loss_D, r1 = discriminator_loss(fake_logits, real_logits, reals, p.r1_gamma,
                                                 r1_weight=p.r1_interval if do_r1 else 0)
        self.opt_D.zero_grad(set_to_none=True)
        total_D.backward()
        average_gradients(list(self.D.parameters()), self.world)
        self.opt_D.step()

        self.cur_nimg += p.batch_size
        self.step_index += 1
        update_ema(self.G_ema, self.G, ema_beta(self.cur_nimg, p.batch_size, p.ema_kimg, p.ema_rampup))
        return StepStats(loss_G.item(), loss_D.item(), real_logits.mean().item(), fake_logits.mean().item(),
                         None if r1 is None else r1.item())

    def state_dict(self) -> dict[str, Any]:
        return {"G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
                "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
                "cur_nimg": self.cur_nimg, "step_index": self.step_index}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        self.cur_nimg, self.step_index = int(state["cur_nimg"]), int(state["step_index"])


# ---------------------------------------------------------------------------------------------------------------
# The run


def tune_cpu_process() -> None:
    """Process-wide CPU settings that speed up training: flush denormals to zero (Adam's second moments get
    tiny), and keep freed large buffers in the heap instead of returning them to the OS after every step
    (glibc mmaps blocks over 128 KiB, so each step's activations would otherwise page-fault afresh)."""
    torch.set_flush_denormal(True)
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(-3, 32 * 1024 * 1024)    # M_MMAP_THRESHOLD: the largest glibc allows
    libc.mallopt(-1, 1 << 30)             # M_TRIM_THRESHOLD


@dataclass(frozen=True)
class GanTrainOptions:
    """What `avatar synth train` (and `avatar build`'s gan stage) asks of a training run."""

    dataset: Path                   # an aligned-face dataset (`avatar synth prepare`)
    preset: str                     # synth/presets.py
    out: Path                       # the run folder
    device: str = "cpu"
    resume: bool = False            # continue from the run folder's last checkpoint
    kimg: float | None = None       # the run's length; None: the preset's (or the resumed run's)
    minutes: float | None = None    # also stop, with a checkpoint and a grid, after this much wall-clock time
    channels_last: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "dataset", Path(self.dataset))
        object.__setattr__(self, "out", Path(self.out))
        if self.kimg is not None and not self.kimg > 0:           # "not >" also refuses NaN
            raise TrainingError(f"--kimg must be a positive number, got {self.kimg}")
        if self.minutes is not None and not self.minutes >= 0:    # 0: one step, then stop
            raise TrainingError(f"--minutes must be zero or more, got {self.minutes}")


def run_training(options: GanTrainOptions) -> Path:
    """Train StyleGAN2 on an aligned-face dataset; returns the run folder (see the module docstring)."""
    check_device(options.device)
    settings = get_preset(options.preset)
    # Only the main process (torchrun's rank 0) writes the folder, so only it locks; should it fail, torchrun
    # stops the other ranks.
    main_process = int(os.environ.get("RANK", "0")) == 0
    with exclusive_run_folder(options.out) if main_process else contextlib.nullcontext():
        created_group = not torch.distributed.is_initialized()
        world = init_world(options.device)
        if world.device == "cpu":
            tune_cpu_process()
        try:
            return _run(options, settings, world)
        finally:
            if created_group:
                close_world(world)


def _resume_state(out: Path, preset: Preset, resume: bool) -> tuple[dict[str, Any] | None, Preset]:
    """The latest checkpoint's state when resuming (None for a fresh run) and the preset to train with."""
    existing = list_checkpoints(out)
    if existing and not resume:
        raise TrainingError(f"{out} already holds checkpoints; pass --resume to continue or choose another --out")
    state = load_checkpoint(existing[-1]) if resume and existing else None
    if state is not None:
        saved = Preset.from_dict(state["preset"])
        if saved.name != preset.name:
            raise TrainingError(f"{out} was trained with preset {saved.name!r}, not {preset.name!r}")
        preset = saved                                    # the checkpoint's preset wins (nanoGPT style)
    return state, preset


class _Snapshots:
    """Writes the EMA generator's sample grid and checkpoints (with every process's RNG state and sampler
    position), all processes taking part."""

    def __init__(self, trainer: GanTrainer, sampler: ImageSampler, folder: RunFolder, world: World, preset: Preset,
                 total_kimg: float, out: Path, batch: int) -> None:
        self.trainer, self.sampler, self.folder, self.world = trainer, sampler, folder, world
        self.preset, self.total_kimg, self.out, self.batch = preset, total_kimg, out, batch
        self.grid_z = torch.randn(GRID_COLS * GRID_ROWS, preset.z_dim,
                                  generator=torch.Generator().manual_seed(preset.seed + 123)).to(world.device)

    def __call__(self, checkpoint: bool, grid: bool) -> None:
        trainer, world = self.trainer, self.world
        rng = all_gather_objects(rng_state(world.device), world)
        positions = all_gather_objects(self.sampler.position, world)
        if world.is_main and grid:
            with torch.no_grad():
                fakes = torch.cat([trainer.G_ema(z, noise_mode="const") for z in self.grid_z.split(self.batch)])
            self.folder.save_samples(fakes, trainer.cur_nimg)
        if world.is_main and checkpoint:
            save_checkpoint({**trainer.state_dict(), "preset": self.preset.to_dict(), "total_kimg": self.total_kimg,
                             "world_size": world.size, "rng": rng, "sampler": positions,
                             "version": CHECKPOINT_VERSION}, self.out, trainer.cur_nimg)
        barrier(world)


def _restore(state: dict[str, Any], trainer: GanTrainer, sampler: ImageSampler, world: World) -> None:
    """A checkpoint's networks, optimisers and counters; its RNG streams and data position when the process
    count is the same (bit-for-bit), else the same data with new streams."""
    trainer.load_state_dict(state)
    if state["world_size"] == world.size:
        set_rng_state(state["rng"][world.rank], world.device)
        sampler.position = state["sampler"][world.rank]
    else:
        sampler.position = trainer.cur_nimg // world.size


def _progress_bar(total_kimg: float, cur_nimg: int, shown: bool) -> tqdm:
    return tqdm(total=round(total_kimg, 3), initial=round(cur_nimg / 1000, 3), unit="kimg", disable=not shown,
                dynamic_ncols=True, bar_format="{l_bar}{bar}| {n:.2f}/{total:.2f} kimg [{elapsed}<{remaining}{postfix}]")


def _run(options: GanTrainOptions, preset: Preset, world: World) -> Path:
    dataset, out, channels_last = options.dataset, options.out, options.channels_last
    state, preset = _resume_state(out, preset, options.resume)
    total_kimg = options.kimg if options.kimg is not None else (state["total_kimg"] if state else preset.total_kimg)
    if preset.batch_size % world.size:
        raise TrainingError(f"batch size {preset.batch_size} does not split over {world.size} processes")
    batch = preset.batch_size // world.size

    images = load_training_images(dataset, preset.resolution)
    if len(images) < world.size:
        raise TrainingError(f"dataset {dataset} holds {len(images)} images; need at least {world.size}")
    seed_all(preset.seed)                               # same initial networks in every process
    trainer = GanTrainer(preset, world, channels_last=channels_last)
    sampler = ImageSampler(len(images), preset.seed, world.rank, world.size, preset.mirror)
    seed_all(preset.seed * 1009 + world.rank + 1)         # a different stream of z, noise, augment per process

    if state is not None:
        _restore(state, trainer, sampler, world)
    folder = RunFolder(out, x="kimg", panels=LOSS_PANELS, step="nimg", steps_per_x=1000)
    if world.is_main and state is None:
        run_info = {"dataset": str(dataset), "preset": preset.to_dict(), "total_kimg": total_kimg,
                    "device": world.device, "world_size": world.size, "channels_last": channels_last,
                    "precision": trainer.precision, "images": len(images)}
        folder.start(run_info, to_float_batch(images, np.arange(min(len(images), 32)), np.zeros(0, bool), "cpu"))
    elif world.is_main:
        folder.resume(trainer.cur_nimg, total_kimg=total_kimg)
    barrier(world)
    snapshot = _Snapshots(trainer, sampler, folder, world, preset, total_kimg, out, batch)

    total_nimg = round(total_kimg * 1000)
    tick = TickLog(trainer.cur_nimg)
    bar = _progress_bar(total_kimg, trainer.cur_nimg, world.is_main)
    last_checkpoint = trainer.cur_nimg if state is not None else -1
    deadline = None if options.minutes is None else time.monotonic() + options.minutes * 60
    final = trainer.cur_nimg >= total_nimg
    while not final:
        prev = trainer.cur_nimg
        indices, flips = sampler.take(batch)
        tick.add(trainer.step(to_float_batch(images, indices, flips, world.device)))
        cur, final = trainer.cur_nimg, trainer.cur_nimg >= total_nimg or out_of_time(deadline, world)
        bar.update((cur - prev) / 1000)
        if crossed(preset.log_kimg, prev, cur) or final:
            row = tick.row(cur, trainer.step_index)
            if world.is_main:
                folder.append_log(row)
            bar.set_postfix_str(f"img/s {row['img_per_s']:.1f} G {row['loss_G']:.3f} D {row['loss_D']:.3f}"
                                + (f" R1 {row['r1']:.4f}" if row["r1"] is not None else ""))
        do_ckpt = crossed(preset.checkpoint_kimg, prev, cur) or final
        do_grid = crossed(preset.sample_kimg, prev, cur) or final
        if do_ckpt or do_grid:
            t0 = time.perf_counter()
            snapshot(do_ckpt, do_grid)
            tick.pause(time.perf_counter() - t0)
            if do_ckpt:
                last_checkpoint = cur
    bar.close()
    if last_checkpoint != trainer.cur_nimg:            # resumed at or past the requested length
        snapshot(True, True)
    return out


def trained_kimg(run_dir: Path) -> float:
    """Thousands of real images the run's latest checkpoint has shown its discriminator: how far it trained."""
    return latest_step(Path(run_dir)) / 1000          # checkpoints are named by cur_nimg


def load_generator(run_dir: Path, device: str = "cpu") -> tuple[Generator, Preset]:
    """The EMA generator of the run's latest checkpoint (eval mode, no grads) and the run's preset."""
    state = load_checkpoint(latest_checkpoint(Path(run_dir)), map_location=device)
    preset = Preset.from_dict(state["preset"])
    G, _ = build_networks(preset)
    G.load_state_dict(state["G_ema"])
    return G.to(device).eval().requires_grad_(False), preset


def main(argv: list[str] | None = None) -> int:
    """`python -m synth.train ...` (what torchrun launches) is `avatar synth train ...`: one parser."""
    from avatar.cli import main as avatar_main

    return avatar_main(["synth", "train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
