"""Atomic file writes: a temporary file beside the target, flushed to disk, then moved into place with os.replace.

A crash never leaves a half-written file under its final name. numpy only, so any package can use it.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")   # what a folder of face images may hold


def image_files(folder: Path) -> list[Path]:
    """The image files directly in `folder`, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Run `write` on a temporary file beside `path`, flush it to disk, then move it into place."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")    # per process: concurrent writers never share one
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, value: Any) -> None:
    """Write JSON to a temporary file beside `path`, then move it into place."""
    write_atomic(path, lambda f: f.write(json.dumps(value, indent=1).encode()))


def write_npy_atomic(path: Path, array: np.ndarray) -> None:
    """Save an array as .npy under a temporary name, then move it into place."""
    write_atomic(path, lambda f: np.save(f, array))


def write_npz_atomic(path: Path, **arrays: np.ndarray) -> None:
    """Save arrays as .npz under a temporary name, then move it into place (used for statistics caches)."""
    write_atomic(path, lambda f: np.savez(f, **arrays))
