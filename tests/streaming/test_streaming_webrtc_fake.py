"""WebRTC plumbing with stand-in parts: pacing, the chat channel, audio placement and barge-in."""
from __future__ import annotations

import asyncio
import time

import pytest

from harness.probe import AvatarProbe
from streaming_support import ToneEngine

pytestmark = pytest.mark.timeout(90)


async def test_paced_media_and_spoken_reply(fake_server: str) -> None:
    probe = AvatarProbe(fake_server)
    try:
        await probe.start(settle=2.5)
        now = time.monotonic()
        fps = probe.received.video_fps(now - 2.0, now)
        assert 20 <= fps <= 30, fps
        assert probe.received.video_sizes[-1] == (128, 128)
        assert probe.received.audio_rms(now - 1.0, now) < 50     # idle: silence

        sent = probe.say("hello there")
        reply = await probe.next_event("reply")
        assert reply["text"] == "You said: hello there"
        await probe.next_event("speaking")
        await probe.next_event("done", timeout=10)
        loud = probe.received.first_loud_audio(sent)
        assert loud is not None, "no audible audio after the reply"
        assert probe.received.audio_rms(loud, loud + 0.5) > 2000  # the tone, not noise
        # the stand-in renders speaking frames bright and idle frames dark: picture and sound start together
        seen = probe.received
        bright = next(t for t, luma in zip(seen.video_times, seen.video_luma) if t >= sent and luma > 100)
        print(f"video leads audio by {loud - bright:+.3f} s")
        assert abs(bright - loud) < 0.12, (bright - loud)
    finally:
        await probe.close()


async def test_bad_messages_get_error_events(fake_server: str) -> None:
    probe = AvatarProbe(fake_server)
    try:
        await probe.connect()
        probe.channel.send(b"\xff\xfe not utf-8")
        probe.say("   ")
        probe.say("fine")
        first, second = [(await probe.next_event("error", timeout=10))["message"] for _ in range(2)]
        assert "UTF-8" in first and "empty" in second, (first, second)
        await asyncio.sleep(0.5)
        replies = [event["text"] for event in probe.log if event["type"] == "reply"]
        assert replies == ["You said: fine"], replies
    finally:
        await probe.close()


async def test_barge_in_cuts_the_old_reply(fake_server: str, fake_engine: ToneEngine) -> None:
    probe = AvatarProbe(fake_server)
    try:
        await probe.connect()
        await probe.wait_for_media()
        probe.say("first message")
        await probe.next_event("speaking")
        await asyncio.sleep(0.3)                                  # well into the first reply
        probe.say("second message")
        await probe.next_event("interrupted", timeout=5)
        reply = await probe.next_event("reply")
        assert reply["text"] == "You said: second message"
        await probe.next_event("done", timeout=10)
        await asyncio.sleep(0.3)
        kinds = [event["type"] for event in probe.log]
        assert kinds.count("done") == 1 and kinds.count("speaking") == 2, kinds  # the first turn never finished
        assert kinds.index("interrupted") < kinds.index("done")
        # the avatar is silent again after the second reply: nothing of the first is left queued
        now = time.monotonic()
        await asyncio.sleep(1.0)
        assert probe.received.audio_rms(now + 0.3, now + 1.0) < 50
        # the planner restarted from the frame on screen: a speaking frame of the first reply
        (on_screen,) = fake_engine.performers[-1].interrupts
        assert on_screen is not None and on_screen >= 100
    finally:
        await probe.close()


async def test_a_barge_in_during_the_second_piece_stops_it_at_once(fake_server: str) -> None:
    """The stand-in speaks two pieces (driving frames 100..109, then 110..119, drawn at grey 2 x index: luma 188 to
    203, then 205 to 220 in video range). A message that arrives while the second piece is on screen stops it at
    once: no later frame of it is shown (idle frames are dark) and the voice falls silent while the new reply is
    thought about (0.5 s); the old reply never says "done"."""
    probe = AvatarProbe(fake_server)
    try:
        await probe.start()
        probe.say("first message")
        await probe.next_event("speaking")
        seen = probe.received
        deadline = time.monotonic() + 5
        while not any(luma > 210 for luma in seen.video_luma[-3:]) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)                            # until the second piece is on screen
        assert any(luma > 210 for luma in seen.video_luma[-3:]), "the second piece never played"
        probe.say("slowly, a second message")
        interrupted = time.monotonic() + 0.15                    # frames already sent may still arrive until then
        await probe.next_event("interrupted", timeout=5)
        await probe.next_event("done", timeout=10)
        frames = list(zip(seen.video_times, seen.video_luma))
        on_screen = [luma for t, luma in frames if t <= interrupted][-1]
        after = [luma for t, luma in frames if t > interrupted]
        stopped = next(i for i, luma in enumerate(after) if luma < 100)        # idle again
        assert stopped <= 3, after[:10]
        assert all(luma <= on_screen + 1.5 for luma in after[:stopped]), (on_screen, after[:stopped])
        assert seen.audio_rms(interrupted + 0.05, interrupted + 0.3) < 50     # and the voice stopped with it
        kinds = [event["type"] for event in probe.log]
        assert kinds.count("done") == 1 and kinds.count("speaking") == 2, kinds
    finally:
        await probe.close()
