"""Where the real footage is, and how the tests use it (imported by name: the root conftest puts tests/ on sys.path)."""
from __future__ import annotations

from pathlib import Path

import pytest

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
