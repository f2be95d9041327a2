"""Training checkpoints in a run folder: written atomically (temporary file + os.replace), found by image count."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from synth.dataset import write_atomic

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^ckpt-(\d{9})\.pt$")


class CheckpointError(ValueError):
    """A run folder without checkpoints, or one that cannot be read."""


def checkpoint_path(run_dir: Path, nimg: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"ckpt-{nimg:09d}.pt"


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


def save_checkpoint(state: dict[str, Any], run_dir: Path, nimg: int, keep: int = 3) -> Path:
    """Write `state` as the checkpoint at `nimg` images, atomically, then drop all but the newest `keep`."""
    path = checkpoint_path(run_dir, nimg)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda f: torch.save(state, f))
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink()
    return path


def load_checkpoint(path: Path, map_location: str = "cpu") -> dict[str, Any]:
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except (OSError, RuntimeError, EOFError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
