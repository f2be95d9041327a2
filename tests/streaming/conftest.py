"""Fixtures: the app with stand-in parts, served by uvicorn on 127.0.0.1 (random free port) in a thread."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from streaming.app import create_app
from streaming_support import ToneEngine, ToneResponder, free_port, loopback_settings, serve_in_thread


@pytest.fixture
def fake_engine() -> ToneEngine:
    return ToneEngine()


@pytest.fixture
def fake_server(fake_engine: ToneEngine) -> Iterator[str]:
    """The app with the stand-in engine and bot (media and protocol checks that need no real voice)."""
    # max_late_share=1: the session-count bound is tested here, and a few late frames of a suite running on two
    # busy cores must not refuse a session as "busy" (that refusal has its own test in test_streaming_load.py)
    app = create_app(loopback_settings(max_sessions=3, max_body_bytes=4096, max_late_share=1.0), engine=fake_engine,
                     responder=ToneResponder())
    with serve_in_thread(app, free_port()) as url:
        yield url


@pytest.fixture(scope="session")
def real_engine():
    """The real avatar engine: the built-in default avatar, the espeak-ng voice and the renderer."""
    from avatar.pipeline import AvatarEngine, AvatarSettings

    return AvatarEngine.from_settings(AvatarSettings())


@pytest.fixture(scope="session")
def real_server(real_engine) -> Iterator[str]:
    """The app with the real engine and the real bot (built in the app's lifespan)."""
    app = create_app(loopback_settings(max_sessions=4), engine=real_engine)
    with serve_in_thread(app, free_port(), timeout=900) as url:
        yield url
