"""The training images as minibatches: loaded once as uint8, drawn in a resumable shuffled order per process,
turned into float batches on the device. TrainingError (bad training input) is raised from here on."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from synth.dataset import load_images


class TrainingError(ValueError):
    """Bad training input: a dataset too small for the preset, a run folder in the wrong state, and the like."""


class ImageSampler:
    """Endless shuffled minibatches over one process's shard; its whole state is the number of images taken.

    Epoch e of rank r is a permutation drawn from seed (seed, r, e), so the batch at any position can be
    recomputed after a resume.
    """

    def __init__(self, count: int, seed: int, rank: int = 0, world_size: int = 1, mirror: bool = False):
        self.indices = np.arange(count)[rank::world_size]
        if len(self.indices) == 0:
            raise TrainingError(f"dataset of {count} images has none for process {rank} of {world_size}")
        self.seed, self.rank, self.mirror = seed, rank, mirror
        self.position = 0
        self._epoch = -1
        self._order = self._flips = np.zeros(0)

    def _load_epoch(self, epoch: int) -> None:
        rng = np.random.default_rng([self.seed, self.rank, epoch])
        self._order = self.indices[rng.permutation(len(self.indices))]
        self._flips = rng.random(len(self.indices)) < 0.5 if self.mirror else np.zeros(len(self.indices), bool)
        self._epoch = epoch

    def take(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Dataset indices and horizontal-flip flags of the next `count` images."""
        idx, flips = [], []
        n = len(self.indices)
        for k in range(self.position, self.position + count):
            if k // n != self._epoch:
                self._load_epoch(k // n)
            idx.append(self._order[k % n])
            flips.append(self._flips[k % n])
        self.position += count
        return np.array(idx), np.array(flips, bool)


def load_training_images(dataset: Path, resolution: int) -> torch.Tensor:
    """The dataset as uint8 NCHW [N, 3, R, R], area-downsampled when it was prepared at a larger size."""
    images = torch.from_numpy(np.array(load_images(dataset))).permute(0, 3, 1, 2)  # [N, 3, S, S]
    size = images.shape[-1]
    if size < resolution or size % resolution:
        raise TrainingError(f"dataset {dataset} has {size} px images; the preset needs {resolution} px "
                            f"(or a multiple of it): prepare it with --size {resolution}")
    if size != resolution:
        chunks = [F.avg_pool2d(images[i: i + 256].float(), size // resolution).round().to(torch.uint8)
                  for i in range(0, len(images), 256)]
        images = torch.cat(chunks)
    return images.contiguous()


def to_float_batch(images: torch.Tensor, indices: np.ndarray, flips: np.ndarray, device: str) -> torch.Tensor:
    """uint8 images at `indices` as float NCHW in [-1, 1], flipped where asked."""
    x = images[torch.from_numpy(indices)].to(device).float() / 127.5 - 1      # [N, 3, R, R]
    if flips.any():
        f = torch.from_numpy(flips).to(device)
        x[f] = x[f].flip(3)
    return x
