"""The files of one training run, for any model: options.json, log.jsonl, losses.png, image grids, checkpoints.

Checkpoints are named by training step (`checkpoints/ckpt-{step:09d}.pt`); every file is written under a
temporary name and moved into place, so a viewer or a resume never sees half a file. torch is imported lazily.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pickle
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from avatar.files import write_atomic, write_json_atomic

if TYPE_CHECKING:
    import torch

CHECKPOINT_DIR = "checkpoints"
GRID_COLS = 8
LOCK_FILE = ".lock"
OPTIONS_FILE = "options.json"
_NAME = re.compile(r"^ckpt-(\d{9})\.pt$")

Panel = Sequence[tuple[str, str]]      # (log key, label) of each curve in one plot


class CheckpointError(ValueError):
    """A run folder without checkpoints, or one that cannot be read."""


class DeviceError(ValueError):
    """A --device this machine cannot run: an unknown name, or CUDA without a CUDA build of torch or a GPU."""


class RunFolderBusy(ValueError):
    """Another process is training into the same run folder."""


def check_device(device: str) -> str:
    """`device` if torch can compute on it here ("cpu", "cuda", "cuda:N"); else DeviceError saying why."""
    import torch

    try:
        kind = torch.device(device)
    except (RuntimeError, ValueError):
        raise DeviceError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if kind.type == "cpu":
        return device
    if kind.type != "cuda":
        raise DeviceError(f"device {device!r} is not supported; use cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        why = ("this torch build has no CUDA" if torch.version.cuda is None
               else f"torch was built for CUDA {torch.version.cuda}, but no GPU is visible")
        raise DeviceError(f"--device {device}: {why} (torch {torch.__version__}); install a CUDA build of torch "
                          "on a machine with an NVIDIA GPU, or use --device cpu")
    if kind.index is not None and kind.index >= torch.cuda.device_count():
        raise DeviceError(f"--device {device}: only {torch.cuda.device_count()} GPU(s) visible")
    return device


# --- checkpoints ------------------------------------------------------------------------------------------------


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"ckpt-{step:09d}.pt"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints of a run, oldest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _NAME.match(p.name))


def latest_checkpoint(run_dir: Path) -> Path:
    found = list_checkpoints(run_dir)
    if not found:
        raise CheckpointError(f"{run_dir} holds no checkpoints ({CHECKPOINT_DIR}/ckpt-*.pt); train first")
    return found[-1]


def latest_step(run_dir: Path) -> int:
    """The step (as the trainer counts them) of the run's latest checkpoint, read from its name, not its contents."""
    return int(_NAME.match(latest_checkpoint(run_dir).name).group(1))


def run_options(run_dir: Path) -> dict[str, Any]:
    """What a run was started with (its options.json: preset, data, devices) and where it resumed; {} where the
    file is missing or unreadable."""
    try:
        options = json.loads((Path(run_dir) / OPTIONS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return options if isinstance(options, dict) else {}


def run_preset(run_dir: Path) -> str | None:
    """The name of the preset a run trained with, from its options (both trainers write it there as a run starts,
    and a resume keeps it); None where they do not say."""
    preset = run_options(run_dir).get("preset")
    return str(preset["name"]) if isinstance(preset, dict) and "name" in preset else None


def save_checkpoint(state: dict[str, Any], run_dir: Path, step: int, keep: int = 3) -> Path:
    """Write `state` as the checkpoint at `step`, atomically, then drop all but the newest `keep`."""
    import torch

    path = checkpoint_path(run_dir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda f: torch.save(state, f))
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink()
    return path


def load_checkpoint(path: Path, map_location: str = "cpu") -> dict[str, Any]:
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)   # tensors and plain data only
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc


# --- pictures ---------------------------------------------------------------------------------------------------


def save_image_grid(images: torch.Tensor, path: Path, cols: int = GRID_COLS) -> None:
    """Float NCHW images in [-1, 1] as one PNG grid, `cols` images wide (the folder is created if missing)."""
    import torch
    from PIL import Image

    n, c, h, w = images.shape
    rows = -(-n // cols)
    grid = torch.zeros(rows * cols, c, h, w, dtype=torch.uint8)
    grid[:n] = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    grid = grid.reshape(rows, cols, c, h, w).permute(0, 3, 1, 4, 2).reshape(rows * h, cols * w, c)  # [H, W, C]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    Image.fromarray(grid.numpy()).save(tmp)
    tmp.replace(path)


def plot_losses(rows: list[dict[str, Any]], path: Path, x: str, panels: Sequence[Panel]) -> None:
    """One plot per panel of its curves against log key `x`, as a PNG; rows missing a key (or None) skip it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for key, label in panel:
            points = [(r[x], r[key]) for r in rows if r.get(x) is not None and r.get(key) is not None]
            if points:
                ax.plot(*zip(*points), label=label)
        ax.set_xlabel(x)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(path)


# --- the folder -------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def exclusive_run_folder(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on run folder `out` (created if missing) while the block runs, so that two
    trainings (say, a forgotten one and a `--resume`) never write into one folder. The OS drops the lock when
    the process ends, however it ends; the lock file keeps the holder's pid for the error message. A folder
    this call created is removed again if the block fails before writing anything into it."""
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            raise RunFolderBusy(f"{out} is in use by another training process (pid {holder}); wait for it to "
                                "finish or stop it, then pass --resume") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
        created = False
    finally:
        if created and [p.name for p in out.iterdir()] == [LOCK_FILE]:   # refused before writing anything
            (out / LOCK_FILE).unlink()
            out.rmdir()
        os.close(fd)


class RunFolder:
    """Writes a run's options, log lines, sample grids and loss plot (only the main process uses one)."""

    def __init__(self, path: Path, x: str, panels: Sequence[Panel], step: str | None = None,
                 steps_per_x: int = 1) -> None:
        self.path = Path(path)
        self.x = x                          # log key of the loss plot's x axis, e.g. "kimg" or "iter"
        self.step = step or x               # log key of the step checkpoints are named by, e.g. "nimg"
        self.steps_per_x = steps_per_x      # step / steps_per_x = x (the GAN: 1000 images per kimg)
        self.panels = panels
        self.options_path = self.path / OPTIONS_FILE
        self.log_path = self.path / "log.jsonl"
        self.grid_dir = self.path / "grids"
        self.resumed_key = f"resumed_at_{x}"

    def start(self, options: dict[str, Any], reals: torch.Tensor | None = None) -> None:
        """A fresh run: write its options, an empty log and, if given, a grid of real training images."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.options_path, {**options, self.resumed_key: []})
        self.log_path.unlink(missing_ok=True)
        if reals is not None:
            save_image_grid(reals, self.grid_dir / "reals.png")

    def resume(self, step: int, **updates: Any) -> None:
        """A resumed run: note it (and `updates`) in the options, drop log lines written after `step`."""
        options = json.loads(self.options_path.read_text()) if self.options_path.is_file() else {}
        options.setdefault(self.resumed_key, []).append(step / self.steps_per_x if self.steps_per_x != 1 else step)
        options.update(updates)
        write_json_atomic(self.options_path, options)
        rows = [r for r in self.log_rows() if r[self.step] <= step]
        self.log_path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def log_rows(self) -> list[dict[str, Any]]:
        if not self.log_path.is_file():
            return []
        rows = []
        for line in self.log_path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:          # a line torn by a kill while it was written: the checkpoint is older
                continue
        return rows

    def append_log(self, row: dict[str, Any]) -> None:
        with open(self.log_path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def plot(self) -> None:
        """Bring losses.png up to date with the log."""
        plot_losses(self.log_rows(), self.path / "losses.png", self.x, self.panels)

    def save_samples(self, images: torch.Tensor, step: int) -> Path:
        """A grid of samples at `step`, and the loss plot brought up to date."""
        path = self.grid_dir / f"grid-{step:09d}.png"
        save_image_grid(images, path)
        self.plot()
        return path
