"""Shared fixtures for synth tests (the prepared real-footage datasets are the root conftest's): two torch
threads, the face scan of the subject's dataset, a seeded random generator."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _few_threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def subject_scan(subject_dataset: Path):
    """face_recognition scan of every subject_A dataset image (cached beside the dataset)."""
    from synth.metrics.images import load_image_set
    from synth.metrics.recognition import scan_set

    return scan_set(load_image_set(subject_dataset), progress=False)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
