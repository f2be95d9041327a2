"""Where the real footage is, and how the tests use it (imported by name: the root conftest puts tests/ on sys.path).

`python -c "import footage; footage.prepare_subject()"` (with tests/ on the path) prepares subject_A's cached
dataset outside pytest: the root conftest runs it in a subprocess at the start of a session.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:        # imported lazily: most tests need none of it
    from synth.prepare import PrepareReport

REPO = Path(__file__).resolve().parents[1]
VIDEOS = REPO.parent / "shared" / "data" / "videos"
STILLS = REPO.parent / "shared" / "data" / "stills" / "face_recognition"
SUBJECT = VIDEOS / "subject_A_man_indoor_60s.mp4"
DRIVING = VIDEOS / "driving_B_man_outdoor_35s.mp4"
MULTI = VIDEOS / "multi_person_stage_10s.mp4"
CACHE = REPO / "var" / "test-cache" / "synth"     # prepared datasets reused across test runs (git-ignored)

SUBJECT_EVERY = 6      # subject_A is prepared on every 6th frame (304 of 1,819) to keep the suite short
MULTI_EVERY = 9        # multi_person on every 9th frame (31 of 275)


def need(path: Path) -> Path:
    """The path, or skip the test when the shared footage is absent."""
    if not path.exists():
        pytest.skip(f"real footage not available: {path} (../shared/data is absent)")
    return path


def prepared_folder(name: str, every: int) -> Path:
    """Where cached_prepare keeps `name` prepared on every `every`-th frame."""
    return CACHE / f"{name}-64-every{every}"


def cached_prepare(video: Path, name: str, every: int) -> tuple[PrepareReport, Path]:
    """`video` prepared at 64 px on every `every`th frame into CACHE (idempotent and resumable, so a second run
    finds it complete at once); a cache made with other options (an older default) is rebuilt."""
    from synth.dataset import DatasetError
    from synth.prepare import PrepareOptions, prepare

    folder = prepared_folder(name, every)
    options = PrepareOptions(size=64, every=every)
    try:
        return prepare([need(video)], folder, options, show_progress=False), folder
    except DatasetError as e:
        if "other options" not in str(e):
            raise
        shutil.rmtree(folder)
        return prepare([video], folder, options, show_progress=False), folder


def prepare_subject() -> tuple[PrepareReport, Path]:
    """subject_A prepared on every SUBJECT_EVERY-th frame: its report and its dataset folder."""
    return cached_prepare(SUBJECT, "subject_A", SUBJECT_EVERY)
