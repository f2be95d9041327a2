"""Shared fixtures for synth tests: real footage paths (skip when absent) and prepared datasets cached under var/.

The cached datasets are built with `prepare` itself, which is idempotent and resumable, so a second test run
finds them complete at once and an interrupted first run picks up where it stopped. Statistics the metrics
compute on them (face scans) are cached inside those folders too.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

from synth_footage import CACHE, MULTI, MULTI_EVERY, SUBJECT, SUBJECT_EVERY, need

if TYPE_CHECKING:        # imported lazily below: the training tests in this folder need none of it
    from synth.prepare import PrepareOptions, PrepareReport


@pytest.fixture(scope="session", autouse=True)
def _few_threads():
    torch.set_num_threads(2)


def cached_prepare(video: Path, name: str, options: PrepareOptions) -> PrepareReport:
    """prepare into CACHE/name; a cache made with other options (an older default) is rebuilt."""
    from synth.dataset import DatasetError
    from synth.prepare import prepare

    try:
        return prepare([need(video)], CACHE / name, options, show_progress=False)
    except DatasetError as e:
        if "other options" not in str(e):
            raise
        shutil.rmtree(CACHE / name)
        return prepare([video], CACHE / name, options, show_progress=False)


def _prepared_name(stem: str, every: int) -> str:
    return f"{stem}-64-every{every}"


def _prepared(video: Path, stem: str, every: int) -> PrepareReport:
    """`video` prepared at 64 px on every `every`th frame, cached in var/test-cache/synth."""
    from synth.prepare import PrepareOptions

    return cached_prepare(video, _prepared_name(stem, every), PrepareOptions(size=64, every=every))


@pytest.fixture(scope="session")
def subject_report() -> PrepareReport:
    """subject_A prepared at 64 px on every 6th frame."""
    return _prepared(SUBJECT, "subject_A", SUBJECT_EVERY)


@pytest.fixture(scope="session")
def subject_dataset(subject_report: PrepareReport) -> Path:
    return CACHE / _prepared_name("subject_A", SUBJECT_EVERY)


@pytest.fixture(scope="session")
def multi_report() -> PrepareReport:
    """The several-people stage clip prepared at 64 px on every 3rd frame."""
    return _prepared(MULTI, "multi_person", MULTI_EVERY)


@pytest.fixture(scope="session")
def multi_dataset(multi_report: PrepareReport) -> Path:
    return CACHE / _prepared_name("multi_person", MULTI_EVERY)


@pytest.fixture(scope="session")
def subject_scan(subject_dataset: Path):
    """face_recognition scan of every subject_A dataset image (cached beside the dataset)."""
    from synth.metrics.images import load_image_set
    from synth.metrics.recognition import scan_set

    return scan_set(load_image_set(subject_dataset), progress=False)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
