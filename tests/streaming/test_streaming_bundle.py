"""A custom avatar made by `avatar build` (the session's smoke bundle) streams over WebRTC like the built-in one."""
from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from streaming.app import create_app
from harness.probe import AvatarProbe
from streaming_support import free_port, loopback_settings, serve_in_thread

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def bundle_server(built_avatar) -> Iterator[str]:
    """The app with the real bot and an engine loaded from the bundle, as `avatar serve --avatar BUNDLE` does."""
    from avatar.pipeline import AvatarEngine, AvatarSettings

    engine = AvatarEngine.from_settings(AvatarSettings(avatar=str(built_avatar.bundle)))
    app = create_app(loopback_settings(max_sessions=2, avatar=str(built_avatar.bundle)), engine=engine)
    with serve_in_thread(app, free_port(), timeout=900) as url:
        yield url


async def test_bundle_streams_at_25_fps_and_names_itself(bundle_server: str) -> None:
    async with httpx.AsyncClient() as client:
        info = (await client.get(f"{bundle_server}/avatar")).json()
    assert info["name"] == "Test Avatar A" and not info["built_in"]
    assert any("Subject A" in line for line in info["consent"])
    probe = AvatarProbe(bundle_server)
    try:
        await probe.start(timeout=60, settle=3.0)
        assert 20 <= probe.received.recent_fps(2.5) <= 30
        assert probe.received.video_sizes[-1] == (360, 360)              # the driving clip's frames
        sent = probe.say("What is AI?")
        await probe.next_event("speaking")
        done = await probe.next_event("done", timeout=60)
        assert done["duration"] > 2.0
        assert probe.received.first_loud_audio(sent) is not None, "the reply was not heard"
        assert 20 <= probe.received.video_fps(sent, time.monotonic()) <= 30
    finally:
        await probe.close()
