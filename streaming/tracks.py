"""The two media tracks of a session, paced on one shared clock.

Video frame k is due at t0 + k/25 (pts in 90 kHz), audio sample n at t0 + n/48000 (pts in samples), with
t0 set by whichever track starts first. Frames are rendered one ahead on a worker thread, so `recv()`
only awaits a future that is normally ready.
"""
from __future__ import annotations

import asyncio
import fractions
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame
from av.packet import Packet

from avatar.render import I420Frames
from avatar.types import FPS, SAMPLE_RATE
from streaming.codecs import OPUS_FRAME, SILENCE_PACKET, OpusPackets
from streaming.guarded import GuardedPerformer
from streaming.timeline import HOLD, Timeline

VIDEO_CLOCK_RATE = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)
MAX_LAG = 0.25                                   # seconds behind schedule before a track skips ahead
RATE_WINDOW = 5                                  # seconds over which a video track reports its frame rate


class SessionClock:
    """t0 of one session, shared by its tracks: set the first time anyone asks."""

    def __init__(self) -> None:
        self._t0: float | None = None

    def start(self) -> float:
        if self._t0 is None:
            self._t0 = time.monotonic()
        return self._t0

    def elapsed(self) -> float:
        return time.monotonic() - self.start()

    async def sleep_until(self, seconds: float) -> None:
        """Sleep until `seconds` after t0 (at once if that has passed)."""
        wait = self.start() + seconds - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)


class FrameLoad:
    """How many of the last `window` seconds' video frames, all sessions together, were handed to their encoders
    late (more than a frame interval after they were due): the service's own measure of whether it keeps up.
    A new session is refused while the share is above a setting (streaming/session.py)."""

    def __init__(self, window: float = 3.0, max_events: int = 20_000, clock=time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._events: deque[tuple[float, bool]] = deque(maxlen=max_events)   # (when, late)
        self._late = 0
        self._lock = threading.Lock()

    def record(self, late: bool) -> None:
        with self._lock:
            if len(self._events) == self._events.maxlen and self._events[0][1]:
                self._late -= 1                  # about to fall off the full deque
            self._events.append((self._clock(), late))
            self._late += late

    def late_share(self) -> float:
        """Late frames / frames over the window (0 when no frame was sent in it)."""
        with self._lock:
            horizon = self._clock() - self.window
            while self._events and self._events[0][0] < horizon:
                self._late -= self._events.popleft()[1]
            return self._late / len(self._events) if self._events else 0.0


class EncoderFrames:
    """Frames for the encoder, converted once per driving frame and shared by all sessions."""

    def __init__(self, max_bytes: int = 256 * 2**20) -> None:
        self._yuv = I420Frames(max_bytes)

    def frame(self, index: int, render: Callable[[int], np.ndarray]) -> VideoFrame:
        return VideoFrame.from_ndarray(self._yuv.get(index, render), format="yuv420p")


class AvatarAudioTrack(MediaStreamTrack):
    """Opus packets of 48 kHz mono speech: the placed utterance's samples, silence elsewhere. Sound goes in
    10 ms packets, each sent when its first sample is due. Settled silence goes in 20 ms packets, each sent
    when its second half is due: so what has been handed out never reaches further ahead than a 10 ms packet
    would, and a reply is placed as early as with 10 ms packets only. When a 20 ms packet is due to start,
    the track first checks that no reply lies in it; if one does, the packet is 10 ms, sent at once.

    The track encodes its own frames (streaming/codecs.py): aiortc sends packets as they are.
    """

    kind = "audio"

    def __init__(self, clock: SessionClock, timeline: Timeline,
                 on_encode: Callable[[float], None] | None = None) -> None:
        """`on_encode(seconds)` is told the CPU time each frame took to encode (for the metrics)."""
        super().__init__()
        self._clock = clock
        self._timeline = timeline
        self._opus = OpusPackets()
        self._on_encode = on_encode
        self._next = 0

    async def recv(self) -> Packet:
        if self.readyState != "live":
            raise MediaStreamError
        n = self._next
        behind = self._clock.elapsed() - n / SAMPLE_RATE
        if behind > MAX_LAG:  # the loop stalled: resume at the present rather than burst the backlog
            n = int(self._clock.elapsed() * SAMPLE_RATE) // OPUS_FRAME * OPUS_FRAME
        await self._clock.sleep_until(n / SAMPLE_RATE)
        quiet = self._opus.silence_settled and self._timeline.quiet_ahead(n, OPUS_FRAME, SILENCE_PACKET)
        if quiet:
            await self._clock.sleep_until((n + OPUS_FRAME) / SAMPLE_RATE)
        start = time.thread_time()
        samples = self._timeline.audio(n, OPUS_FRAME, SILENCE_PACKET if quiet else None)
        packet = self._opus.packet(samples, n)
        if self._on_encode is not None:
            self._on_encode(time.thread_time() - start)
        self._next = n + len(samples)
        return packet


class AvatarVideoTrack(MediaStreamTrack):
    """25 fps frames of the avatar: utterance frames while speaking, idle frames otherwise."""

    kind = "video"

    def __init__(self, clock: SessionClock, timeline: Timeline, performer: GuardedPerformer,
                 frames: EncoderFrames, executor: Executor | None = None, load: FrameLoad | None = None,
                 on_render: Callable[[float], None] | None = None) -> None:
        """`on_render(seconds)` is told the CPU time each frame took to render and convert (for the metrics)."""
        super().__init__()
        self._load = load
        self._on_render = on_render
        self._sent_at: deque[float] = deque(maxlen=FPS * RATE_WINDOW)
        self._clock = clock
        self._timeline = timeline
        self._performer = performer
        self._frames = frames
        self._executor = executor
        self._next = 0
        self._ahead: tuple[int, int, asyncio.Future] | None = None  # (k, timeline generation, frame)
        self.frames_sent = 0       # frames handed to the encoder
        self.frames_skipped = 0    # frames never sent because rendering fell more than MAX_LAG behind
        self.frames_late = 0       # frames handed over more than one frame interval after they were due

    def _make_frame(self, k: int) -> VideoFrame:
        """Worker thread: decide what frame k shows, render it and convert it for the encoder."""
        start = time.thread_time()
        index = self._timeline.frame_index(k)
        if index is None:
            index = self._performer.idle_index()
        elif index is HOLD:
            index = self._performer.shown
        else:
            self._performer.show(index)
        frame = self._frames.frame(index, self._performer.render)
        frame.pts = k * (VIDEO_CLOCK_RATE // FPS)
        frame.time_base = VIDEO_TIME_BASE
        if self._on_render is not None:
            self._on_render(time.thread_time() - start)
        return frame

    def recent_fps(self) -> float:
        """Frames handed to the encoder per second over the last RATE_WINDOW seconds."""
        horizon = time.monotonic() - RATE_WINDOW
        return sum(1 for t in self._sent_at if t >= horizon) / RATE_WINDOW

    def _submit(self, k: int) -> tuple[int, int, asyncio.Future]:
        loop = asyncio.get_running_loop()
        return k, self._timeline.generation, loop.run_in_executor(self._executor, self._make_frame, k)

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        k = self._next
        behind = self._clock.elapsed() - k / FPS
        if behind > MAX_LAG:  # rendering fell behind: skip to the present, the timeline stays aligned
            k = int(self._clock.elapsed() * FPS)
            self.frames_skipped += k - self._next
        ahead = self._ahead
        if ahead is None or ahead[0] != k or ahead[1] != self._timeline.generation:
            ahead = self._submit(k)  # nothing usable rendered ahead (start, skip or barge-in)
        frame = await ahead[2]
        self._ahead = self._submit(k + 1)
        await self._clock.sleep_until(k / FPS)
        decided = ahead[1]
        for _ in range(3):  # an utterance placed on frame k (or a barge-in) while it waited: decide k again
            if decided == self._timeline.generation:
                break
            _, decided, again = self._submit(k)
            frame = await again
        self._timeline.sent(k)  # no await since k was decided: the timeline cannot have moved meanwhile
        self._next = k + 1
        self.frames_sent += 1
        self._sent_at.append(time.monotonic())
        late = self._clock.elapsed() > (k + 1) / FPS
        self.frames_late += late
        if self._load is not None:
            self._load.record(late)
        return frame

    def stop(self) -> None:
        if self._ahead is not None:
            self._ahead[2].cancel()
            self._ahead = None
        super().stop()
