"""Fixtures shared by the avatar tests: the default driving clip (built once, cached under var/avatars), the
real avatar engine and the real bot for the export tests."""
from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from avatar.default_avatar import load_default_clip
from avatar.driving import DrivingClip

REPO = Path(__file__).resolve().parents[2]
VIDEOS = REPO.parent / "shared" / "data" / "videos"


@pytest.fixture(scope="session")
def default_clip() -> DrivingClip:
    """The built-in avatar's clip; generated on the first run (about 10 s), then read from the cache."""
    return load_default_clip()


@pytest.fixture(scope="session")
def videos() -> Path:
    """The shared real footage folder; tests that need it skip when it is absent."""
    if not VIDEOS.is_dir():
        pytest.skip(f"shared footage not found at {VIDEOS}")
    return VIDEOS


@pytest.fixture(scope="session")
def engine(default_clip: DrivingClip):
    """The real avatar engine: espeak-ng voice, the default clip, the identity face model."""
    from avatar.face import IdentityFaceModel
    from avatar.pipeline import AvatarEngine
    from avatar.voice import EspeakVoice, VoiceSettings

    return AvatarEngine(EspeakVoice(VoiceSettings()), default_clip, IdentityFaceModel())


@pytest.fixture(scope="session")
def responder(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """The real bot on a private database: a copy of the bot tests' trained cache when there is one for the
    current corpus, else trained here at first use."""
    from bot.responder import BotSettings, ChatResponder
    from bot.training import corpus_fingerprint

    path = tmp_path_factory.mktemp("bot") / "bot.sqlite3"
    cached = REPO / "var" / "cache" / "bot" / f"trained-{corpus_fingerprint()}.sqlite3"
    if cached.is_file():
        shutil.copyfile(cached, path)
    with ChatResponder.create(BotSettings(database_url=f"sqlite:///{path}", show_progress=False)) as bot:
        yield bot
