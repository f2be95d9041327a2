"""End to end over WebRTC with the real parts: an aiortc client on 127.0.0.1 sees and hears the avatar answer."""
from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

from harness.probe import AvatarProbe

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

AI_ANSWER = "Artificial Intelligence is the branch of engineering and science devoted to constructing machines that think."


def mouth_box(engine) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) around every mouth position of the driving clip, in output pixels."""
    lips = engine.clip.landmarks[:, 48:68]                          # [N, 20, 2] (x, y)
    return (int(lips[..., 0].min()) - 4, int(lips[..., 1].min()) - 4,
            int(lips[..., 0].max()) + 4, int(lips[..., 1].max()) + 4)


async def test_client_sees_and_hears_the_answer(real_server: str, real_engine) -> None:
    probe = AvatarProbe(real_server, watch_box=mouth_box(real_engine))
    try:
        await probe.start(timeout=60, settle=3.0)
        now = time.monotonic()
        assert 20 <= probe.received.video_fps(now - 2.5, now) <= 30
        width, height = probe.received.video_sizes[-1]
        assert width >= 256 and height >= 256
        idle_rms = probe.received.audio_rms(now - 2.0, now)
        assert idle_rms < 50                                           # silence while listening

        sent = probe.say("What is AI?")
        assert (await probe.next_event("reply"))["text"] == AI_ANSWER
        await probe.next_event("speaking")
        done = await probe.next_event("done", timeout=60)
        assert done["duration"] > 2.0
        loud = probe.received.first_loud_audio(sent)
        assert loud is not None, "the reply was not heard"
        assert probe.received.audio_rms(loud, loud + done["duration"]) > 500   # speech, not a click
        after = time.monotonic()
        assert 20 <= probe.received.video_fps(sent, after) <= 30        # the pace holds while speaking

        # the mouth moves while the voice speaks, much more than while listening
        seen = probe.received
        times, crops = np.array(seen.video_times), np.array(seen.video_crops, np.float32)
        listening = (times > sent - 2.5) & (times < sent)
        speaking_frames = (times >= loud) & (times < loud + done["duration"])
        rest = np.median(crops[listening], axis=0)
        change = np.abs(crops - rest).mean(axis=(1, 2))                 # per frame, mean |luma - rest|
        assert change[speaking_frames].mean() > 1.8 * change[listening].mean(), (
            change[speaking_frames].mean(), change[listening].mean())
    finally:
        await probe.close()


async def test_bot_refusals_are_clear_4xx(real_server: str) -> None:
    async with httpx.AsyncClient(base_url=real_server, timeout=60) as http:
        empty = await http.post("/chat", json={"text": "  "})
        assert empty.status_code == 422 and "empty" in empty.json()["detail"]
        huge = await http.post("/chat", json={"text": "a" * 10_000})   # within the body limit, over the bot's
        assert huge.status_code == 422 and "too long" in huge.json()["detail"]
        emoji = await http.post("/chat", json={"text": "🙂🙂"})
        assert emoji.status_code == 200 and emoji.json()["reply"]
