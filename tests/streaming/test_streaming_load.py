"""The service measures whether it keeps up (video frames handed to the encoders late) and refuses a new
session while it does not; every session's end is logged as one JSON record."""
from __future__ import annotations

import json
import logging

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from streaming.session import Session, SessionLimitReached, SessionRegistry
from streaming.tracks import EncoderFrames, FrameLoad
from streaming.workers import Workers
from streaming_support import ToneEngine, ToneResponder


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_late_share_covers_the_last_window_only() -> None:
    clock = Clock()
    load = FrameLoad(window=3.0, clock=clock)
    assert load.late_share() == 0.0                      # nothing sent yet
    for i in range(100):
        load.record(late=i % 4 == 0)                     # a quarter late
    assert load.late_share() == pytest.approx(0.25)
    clock.now += 2.0
    for _ in range(100):
        load.record(late=False)
    assert load.late_share() == pytest.approx(25 / 200)
    clock.now += 1.5                                     # the first hundred have left the window
    assert load.late_share() == 0.0
    clock.now += 10.0
    assert load.late_share() == 0.0                      # and so have the rest


def test_frame_load_is_bounded() -> None:
    load = FrameLoad(window=60.0, max_events=50, clock=Clock())
    for _ in range(40):
        load.record(late=True)
    for _ in range(1000):
        load.record(late=False)
    assert load.late_share() == 0.0                      # the late ones fell off the bounded record
    for _ in range(10):
        load.record(late=True)
    assert load.late_share() == pytest.approx(10 / 50)


async def test_a_new_session_is_refused_while_the_live_ones_fall_behind(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="streaming.session")
    registry = SessionRegistry(max_sessions=8, connect_timeout=60, max_late_share=0.05)
    workers = Workers.create(1, 1, 1)
    for _ in range(100):
        registry.load.record(late=True)                  # late frames with no live session: no one to protect
    registry.check_room()
    session = Session(RTCPeerConnection(RTCConfiguration(iceServers=[])), ToneEngine(), ToneResponder(),
                      EncoderFrames(), workers, client="198.51.100.7")
    try:
        registry.add(session)
        with pytest.raises(SessionLimitReached, match="falling behind"):
            registry.check_room()
        for _ in range(2000):                            # the service caught up: 100 late in 2100 is under 5 %
            registry.load.record(late=False)
        registry.check_room()
    finally:
        assert await registry.close(session.id, "a test ends it")
        workers.shutdown()
    starts = [r.getMessage() for r in caplog.records if r.getMessage().startswith("session start ")]
    ends = [r.getMessage() for r in caplog.records if r.getMessage().startswith("session end ")]
    assert len(starts) == 1 and len(ends) == 1, (starts, ends)
    record = json.loads(ends[0].removeprefix("session end "))
    assert record["session"] == session.id and record["client"] == "198.51.100.7"
    assert record["reason"] == "a test ends it" and record["messages"] == 0
    assert {"seconds", "frames", "frames_skipped", "frames_late"} <= record.keys()
