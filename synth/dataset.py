"""The aligned-face dataset on disk: uint8 shards plus per-image metadata, written atomically and resumably.

Layout of a DATASET folder (version 1):

    dataset.json        {"size": S, "count": N, "sources": [...], "counts": {...}, "version": 1}; written last,
                        so its presence means the dataset is complete
    shard-00000.npy     uint8 [n, S, S, 3] RGB
    shard-00000.json    list of n dicts: {"source": video name, "frame": index, "landmarks": [[x, y] * 68]}
    progress.json       writer state: options fingerprint, number of complete shards, the caller's progress

Every file is written to a temporary name and moved into place with os.replace, so a crash never leaves a
half-written shard under its final name.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from avatar.files import write_json_atomic, write_npy_atomic

VERSION = 1
INFO_FILE = "dataset.json"
PROGRESS_FILE = "progress.json"


class DatasetError(ValueError):
    """A dataset folder is missing, incomplete, or was made with other options."""


@dataclass(frozen=True)
class DatasetInfo:
    """What dataset.json says about a complete dataset."""

    size: int                                   # image side in pixels
    count: int                                  # number of images
    sources: tuple[str, ...]                    # source video names
    counts: dict[str, int] = field(default_factory=dict)  # per-reason frame counts from prepare
    version: int = VERSION

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "count": self.count, "sources": list(self.sources),
                "counts": dict(self.counts), "version": self.version}


def _shard_stem(index: int) -> str:
    return f"shard-{index:05d}"


def read_info(path: Path | str) -> DatasetInfo:
    """Read dataset.json of a complete dataset; raise DatasetError if there is none."""
    info_path = Path(path) / INFO_FILE
    if not info_path.is_file():
        raise DatasetError(f"{path} is not a complete dataset (no {INFO_FILE}); run `avatar synth prepare` first")
    raw = json.loads(info_path.read_text())
    if raw.get("version") != VERSION:
        raise DatasetError(f"{info_path}: dataset version {raw.get('version')} is not supported (want {VERSION})")
    return DatasetInfo(size=int(raw["size"]), count=int(raw["count"]), sources=tuple(raw["sources"]),
                       counts={k: int(v) for k, v in raw.get("counts", {}).items()}, version=VERSION)


def _shard_paths(path: Path) -> list[Path]:
    return sorted(path.glob("shard-[0-9][0-9][0-9][0-9][0-9].npy"))


def load_images(path: Path | str) -> np.ndarray:
    """All images of a complete dataset, uint8 [N, S, S, 3] RGB (a read-only memory map when there is one shard)."""
    path = Path(path)
    info = read_info(path)
    shards = [np.load(p, mmap_mode="r") for p in _shard_paths(path)]
    if not shards:
        return np.zeros((0, info.size, info.size, 3), np.uint8)
    images = shards[0] if len(shards) == 1 else np.concatenate(shards)
    if images.shape != (info.count, info.size, info.size, 3) or images.dtype != np.uint8:
        raise DatasetError(f"{path}: shards hold {images.shape} {images.dtype}, "
                           f"dataset.json says {info.count} images of {info.size} px")
    return images


def load_metadata(path: Path | str) -> list[dict[str, Any]]:
    """Per-image metadata of a complete dataset, in image order."""
    path = Path(path)
    read_info(path)
    meta: list[dict[str, Any]] = []
    for npy in _shard_paths(path):
        meta.extend(json.loads(npy.with_suffix(".json").read_text()))
    return meta


class DatasetWriter:
    """Appends aligned faces to a dataset folder in shards; an interrupted run resumes from the last complete shard.

    Usage: check `complete` (nothing to do) and `progress` (the caller's state saved with the last complete
    shard, or None for a fresh start); `add` images; `commit(progress)` whenever the caller has reached a point it
    can resume from (the writer also needs a commit once `pending >= shard_size`); `finish` writes dataset.json.
    `fingerprint` describes the options the dataset is made with: a folder made with other options is refused.
    """

    def __init__(self, path: Path | str, size: int, fingerprint: dict[str, Any], shard_size: int = 1024):
        self.path = Path(path)
        self.size = size
        self.shard_size = shard_size
        self.fingerprint = json.loads(json.dumps(fingerprint))  # normalise tuples etc. to JSON types
        self._images: list[np.ndarray] = []
        self._meta: list[dict[str, Any]] = []
        self.path.mkdir(parents=True, exist_ok=True)
        self.shards, self.count, self.progress = self._load_state()

    def _load_state(self) -> tuple[int, int, dict[str, Any] | None]:
        state_path = self.path / PROGRESS_FILE
        if not state_path.is_file():
            if _shard_paths(self.path) or (self.path / INFO_FILE).exists():
                raise DatasetError(f"{self.path} holds shards but no {PROGRESS_FILE}; delete it or choose another --out")
            return 0, 0, None
        state = json.loads(state_path.read_text())
        theirs = state.get("fingerprint") or {}
        if theirs != self.fingerprint:
            differ = ", ".join(f"{k}: {theirs.get(k)!r} there, {self.fingerprint.get(k)!r} here"
                               for k in sorted(set(theirs) | set(self.fingerprint))
                               if theirs.get(k) != self.fingerprint.get(k))
            raise DatasetError(f"{self.path} holds a dataset made with other options ({differ}); "
                               f"delete it or choose another --out")
        shards = int(state["shards"])
        for extra in _shard_paths(self.path)[shards:]:   # written after the last commit: not part of the state
            extra.unlink()
            extra.with_suffix(".json").unlink(missing_ok=True)
        return shards, int(state["count"]), state.get("progress")

    @property
    def complete(self) -> bool:
        return (self.path / INFO_FILE).is_file()

    @property
    def pending(self) -> int:
        return len(self._images)

    def add(self, image: np.ndarray, meta: dict[str, Any]) -> None:
        if image.shape != (self.size, self.size, 3) or image.dtype != np.uint8:
            raise DatasetError(f"expected uint8 [{self.size}, {self.size}, 3], got {image.dtype} {list(image.shape)}")
        self._images.append(image)
        self._meta.append(meta)

    def commit(self, progress: dict[str, Any]) -> None:
        """Write pending images as shards, then the caller's progress; resuming starts from here."""
        while self._images:
            n = min(self.shard_size, len(self._images))
            stem = _shard_stem(self.shards)
            write_npy_atomic(self.path / f"{stem}.npy", np.stack(self._images[:n]))
            write_json_atomic(self.path / f"{stem}.json", self._meta[:n])
            del self._images[:n], self._meta[:n]
            self.shards += 1
            self.count += n
        self.progress = progress
        write_json_atomic(self.path / PROGRESS_FILE, {"fingerprint": self.fingerprint, "shards": self.shards,
                                                       "count": self.count, "progress": progress})

    def finish(self, sources: list[str], counts: dict[str, int], progress: dict[str, Any]) -> DatasetInfo:
        self.commit(progress)
        info = DatasetInfo(size=self.size, count=self.count, sources=tuple(sources), counts=dict(counts))
        write_json_atomic(self.path / INFO_FILE, info.to_json())
        return info
