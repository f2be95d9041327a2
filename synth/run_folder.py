"""The files of one training run: options.json, log.jsonl, losses.png and grids/ (checkpoints: synth.checkpoint).

Pictures are written to a temporary name and moved into place, so a viewer never sees half a PNG.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any, Iterator

import torch

GRID_COLS = 8


def save_image_grid(images: torch.Tensor, path: Path, cols: int = GRID_COLS) -> None:
    """Float NCHW images in [-1, 1] as one PNG grid, `cols` images wide."""
    from PIL import Image

    n, c, h, w = images.shape
    rows = -(-n // cols)
    grid = torch.zeros(rows * cols, c, h, w, dtype=torch.uint8)
    grid[:n] = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    grid = grid.reshape(rows, cols, c, h, w).permute(0, 3, 1, 4, 2).reshape(rows * h, cols * w, c)  # [H, W, C]
    tmp = path.with_name(path.name + ".tmp.png")
    Image.fromarray(grid.numpy()).save(tmp)
    tmp.replace(path)


def plot_losses(rows: list[dict[str, Any]], path: Path) -> None:
    """Loss curves (G, D, R1) and mean D logits (real, fake) against kimg, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return
    kimg = [r["kimg"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax1.plot(kimg, [r["loss_G"] for r in rows], label="G loss")
    ax1.plot(kimg, [r["loss_D"] for r in rows], label="D loss")
    r1 = [(r["kimg"], r["r1"]) for r in rows if r.get("r1") is not None]
    if r1:
        ax1.plot(*zip(*r1), label="R1 penalty")
    ax2.plot(kimg, [r["real_score"] for r in rows], label="D(real)")
    ax2.plot(kimg, [r["fake_score"] for r in rows], label="D(fake)")
    for ax in (ax1, ax2):
        ax.set_xlabel("kimg")
        ax.legend()
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(path)


class RunFolderBusy(ValueError):
    """Another process is training into the same run folder."""


LOCK_FILE = ".lock"


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

    def __init__(self, path: Path):
        self.path = Path(path)
        self.options_path = self.path / "options.json"
        self.log_path = self.path / "log.jsonl"
        self.grid_dir = self.path / "grids"

    def start(self, options: dict[str, Any], reals: torch.Tensor) -> None:
        """A fresh run: write its options, an empty log and a grid of real training images."""
        self.grid_dir.mkdir(parents=True, exist_ok=True)
        self.options_path.write_text(json.dumps({**options, "resumed_at_kimg": []}, indent=1))
        self.log_path.unlink(missing_ok=True)
        save_image_grid(reals, self.grid_dir / "reals.png")

    def resume(self, nimg: int, total_kimg: float) -> None:
        """A resumed run: note it in the options and drop log lines written after the checkpoint at `nimg`."""
        self.grid_dir.mkdir(parents=True, exist_ok=True)
        options = json.loads(self.options_path.read_text()) if self.options_path.is_file() else {}
        options.setdefault("resumed_at_kimg", []).append(nimg / 1000)
        options["total_kimg"] = total_kimg
        self.options_path.write_text(json.dumps(options, indent=1))
        rows = [r for r in self.log_rows() if r["nimg"] <= nimg]
        self.log_path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def log_rows(self) -> list[dict[str, Any]]:
        if not self.log_path.is_file():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.strip()]

    def append_log(self, row: dict[str, Any]) -> None:
        with open(self.log_path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def save_samples(self, images: torch.Tensor, nimg: int) -> Path:
        """A grid of samples at `nimg` images, and the loss plot brought up to date."""
        path = self.grid_dir / f"grid-{nimg:09d}.png"
        save_image_grid(images, path)
        plot_losses(self.log_rows(), self.path / "losses.png")
        return path
