"""Data-channel messages are checked before they are echoed or answered: an oversized, empty, binary or
invalid-UTF-8 message gets an `error` event, is never echoed, and the session keeps streaming."""
from __future__ import annotations

import asyncio
import time

import pytest
from aiortc.rtcsctptransport import WEBRTC_STRING

from streaming.app import create_app
from harness.probe import AvatarProbe
from streaming_support import ToneEngine, ToneResponder, free_port, loopback_settings, serve_in_thread

pytestmark = pytest.mark.timeout(120)

MAX_CHARS = 200
MAX_BYTES = 64 * 1024


@pytest.fixture
def channel_server() -> str:
    settings = loopback_settings(max_sessions=2, max_message_chars=MAX_CHARS, max_channel_message_bytes=MAX_BYTES)
    with serve_in_thread(create_app(settings, engine=ToneEngine(), responder=ToneResponder()), free_port()) as url:
        yield url


def send_raw(probe: AvatarProbe, pp_id: int, data: bytes) -> None:
    """Send `data` under any PPID, as a hostile client would: past aiortc's encoding and size checks."""
    sctp = probe.pc.sctp
    sctp._data_channel_queue.append((probe.channel, pp_id, data))
    asyncio.ensure_future(sctp._data_channel_flush())


BAD = {                                                   # what to send, words the error must contain
    "invalid UTF-8 string": (lambda probe: send_raw(probe, WEBRTC_STRING, b"caf\xc3 \xff\xfe"), "UTF-8"),
    "binary, not UTF-8": (lambda probe: probe.channel.send(b"\xff\xfe\x00 not text"), "UTF-8"),
    "empty string": (lambda probe: probe.channel.send(""), "empty"),
    "whitespace only": (lambda probe: probe.channel.send(" \t\n "), "empty"),
    "empty binary": (lambda probe: probe.channel.send(b""), "empty"),
    "over max_message_chars": (lambda probe: probe.channel.send("a" * (MAX_CHARS + 1)), "too long"),
    "60 kB of NULs": (lambda probe: probe.channel.send("\x00" * 60_000), "too long"),
    "string over the byte limit": (lambda probe: send_raw(probe, WEBRTC_STRING, b"b" * (MAX_BYTES + 1)), "too large"),
    "1 MB binary": (lambda probe: probe.channel.send(b"c" * 2**20), "too large"),
}


async def test_bad_messages_get_an_error_event_and_the_session_streams_on(channel_server: str) -> None:
    probe = AvatarProbe(channel_server)
    try:
        await probe.connect()
        await probe.wait_for_media()
        probe.pc.sctp._remote_max_message_size = 0   # a hostile client ignores the advertised maximum
        for name, (send, words) in BAD.items():
            before = len(probe.log)
            send(probe)
            error = await probe.next_event("error", timeout=10)
            assert words.lower() in error["message"].lower(), (name, error)
            assert len(error["message"]) < 200, (name, error)            # plain words, not an echo
            await asyncio.sleep(0.2)
            kinds = [event["type"] for event in probe.log[before:]]
            assert kinds == ["error"], (name, kinds)                      # nothing echoed, nothing answered
            print(f"{name}: {error['message']}")
        assert probe.pc.connectionState == "connected"
        await asyncio.sleep(1.5)
        now = time.monotonic()
        fps = probe.received.video_fps(now - 1.0, now)
        assert fps > 20, fps
        probe.say("still there?")
        assert (await probe.next_event("user"))["text"] == "still there?"
        assert (await probe.next_event("reply"))["text"] == "You said: still there?"
    finally:
        await probe.close()


async def test_the_advertised_maximum_is_what_is_accepted(channel_server: str) -> None:
    """The answer advertises the limit, so a well-behaved client refuses to send more itself; a message of
    exactly the limit still gets through the transport (then the text rules apply)."""
    probe = AvatarProbe(channel_server)
    try:
        await probe.connect()
        assert f"a=max-message-size:{MAX_BYTES}\r\n" in probe.pc.remoteDescription.sdp
        with pytest.raises(ValueError, match="Cannot send message"):
            probe.channel.send(b"d" * (MAX_BYTES + 1))
        probe.channel.send(b"d" * MAX_BYTES)
        error = await probe.next_event("error", timeout=10)
        assert "too long" in error["message"], error                      # not "too large"
    finally:
        await probe.close()
