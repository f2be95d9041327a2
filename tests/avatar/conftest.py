"""Fixtures shared by the avatar tests: the default driving clip, built once and cached under var/avatars."""
from __future__ import annotations

from pathlib import Path

import pytest

from avatar.default_avatar import load_default_clip
from avatar.driving import DrivingClip

REPO = Path(__file__).resolve().parents[2]
VIDEOS = REPO.parent / "shared" / "data" / "videos"


@pytest.fixture(scope="session")
def default_clip() -> DrivingClip:
    """The built-in avatar's clip; generated on the first run (about 15 s), then read from the cache."""
    return load_default_clip()


@pytest.fixture(scope="session")
def videos() -> Path:
    """The shared real footage folder; tests that need it skip when it is absent."""
    if not VIDEOS.is_dir():
        pytest.skip(f"shared footage not found at {VIDEOS}")
    return VIDEOS
