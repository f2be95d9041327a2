"""The two media tracks of a session, paced on one shared clock.

Video frame k is due at t0 + k/25 (pts in 90 kHz), audio sample n at t0 + n/48000 (pts in samples), with
t0 set by whichever track starts first. Frames are rendered one ahead on a worker thread, so `recv()`
only awaits a future that is normally ready. A listening session's video sends the service's shared idle
stream where it can (streaming/shared_idle.py): encoded frames, which aiortc packs as they are.
"""
from __future__ import annotations

import asyncio
import fractions
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame
from av.packet import Packet

from avatar.render import I420Frames
from avatar.types import FPS, SAMPLE_RATE
from streaming.codecs import OPUS_FRAME, SILENCE_PACKET, SOUND_PACKET, AvatarVp8Encoder, OpusPackets
from streaming.guarded import GuardedPerformer
from streaming.timeline import HOLD, Timeline

if TYPE_CHECKING:
    from streaming.shared_idle import SharedIdle

log = logging.getLogger(__name__)
VIDEO_CLOCK_RATE = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)
MAX_LAG = 0.25                                   # seconds behind schedule before a track skips ahead
TRANSITION_FRAMES = FPS                          # frames a session takes at least to steer into the idle stream
REJOIN_BACKOFF = 2 * FPS                         # frames before taking the stream again after a PLI, doubling
MAX_REJOIN_BACKOFF = 16 * FPS                    # ... up to this (and forgotten after this long in the stream)
SOUND_START_PACKETS = 8                          # 10 ms packets that start a run of sound (aiortc holds 4 or more)
DTX_KEEPALIVE = SAMPLE_RATE * 2 // 5             # 400 ms: in paused silence, one packet this often (as libopus' DTX)
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

    async def wait(self, event: asyncio.Event, seconds: float) -> bool:
        """Wait until `event` is set or `seconds` after t0 has come; whether the event came first."""
        wait = self.start() + seconds - time.monotonic()
        if event.is_set() or wait <= 0:
            return event.is_set()
        try:
            await asyncio.wait_for(event.wait(), wait)
        except TimeoutError:
            return False
        return True


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
        """A VideoFrame over the cached YUV array itself (read-only; the encoders only read it): copying it
        into a new frame, as `from_ndarray` does, took 0.4 ms a frame, more than the VP8 encode of a
        talking frame."""
        return VideoFrame.from_numpy_buffer(self._yuv.get(index, render), format="yuv420p")


class AvatarAudioTrack(MediaStreamTrack):
    """Opus packets of 48 kHz mono speech: the placed utterance's samples, silence elsewhere. Sound goes in
    packets sent when their first sample is due: a run of sound starts with SOUND_START_PACKETS 10 ms
    packets (a receiver's jitter buffer that waits for a number of packets holds 10 ms ones, so the first
    sound plays sooner), and goes on in 20 ms packets (half the packets to send, encrypt and receive). A
    barge-in may so let up to 20 ms of a reply that has been handed out play. Settled silence goes in 20 ms
    packets, each sent when its second half is due: so what has been handed out never reaches further ahead
    than a 10 ms packet would, and a reply is placed as early as with 10 ms packets only. When a 20 ms packet
    of silence is due to start, the track first checks that no reply lies in it; if one does, the packet is
    10 ms, sent at once.

    While the silence is settled and no reply is placed, the track pauses (discontinuous transmission, RFC 7587
    section 3.1.3): it sends one 20 ms packet of silence every 400 ms and nothing else, so an idle session's
    audio costs the sender and each receiver 2.5 packets a second instead of 50. The timestamps jump over the
    pause, the sequence numbers do not, which is how a receiver tells a pause from a loss. A reply placed
    during the pause wakes the track at once (`Timeline.on_place`), and the timeline starts it no earlier than
    the packet due at the time, so nothing of it is skipped.

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
        self._keepalive = 0                   # the sample from which a paused track sends its next packet
        self._sound_run = 0                   # packets with sound in a row, up to the last one sent
        self._placed: asyncio.Event | None = None
        self.pauses = 0                       # how many times the track paused in silence

    async def recv(self) -> Packet:
        if self.readyState != "live":
            raise MediaStreamError
        n = self._next
        behind = self._clock.elapsed() - n / SAMPLE_RATE
        if behind > MAX_LAG:  # the loop stalled: resume at the present rather than burst the backlog
            n = int(self._clock.elapsed() * SAMPLE_RATE) // OPUS_FRAME * OPUS_FRAME
        await self._clock.sleep_until(n / SAMPLE_RATE)
        if self._opus.silence_settled and n < self._keepalive:
            n = await self._pause(n)
            await self._clock.sleep_until(n / SAMPLE_RATE)
        quiet = self._opus.silence_settled and self._timeline.quiet_ahead(n, OPUS_FRAME, SILENCE_PACKET)
        if quiet:
            await self._clock.sleep_until((n + OPUS_FRAME) / SAMPLE_RATE)
        start = time.thread_time()
        if not quiet and self._sound_run >= SOUND_START_PACKETS:
            samples = self._timeline.audio(n, SOUND_PACKET)
        else:
            samples = self._timeline.audio(n, OPUS_FRAME, SILENCE_PACKET if quiet else None)
        packet = self._opus.packet(samples, n)
        if self._on_encode is not None:
            self._on_encode(time.thread_time() - start)
        self._sound_run = self._sound_run + 1 if samples.any() else 0
        self._next = n + len(samples)
        self._keepalive = n + DTX_KEEPALIVE
        return packet

    async def _pause(self, n: int) -> int:
        """Send nothing from sample `n` until a reply is placed or the next keepalive packet is due; the
        sample to go on from (`n` itself when a reply is placed already)."""
        if self._placed is None:
            loop, placed = asyncio.get_running_loop(), asyncio.Event()
            self._placed = placed
            self._timeline.on_place = lambda: _call_soon(loop, placed.set)
        self._placed.clear()
        if not self._timeline.silent_after(n):
            return n
        self.pauses += 1
        if not await self._clock.wait(self._placed, self._keepalive / SAMPLE_RATE):
            return self._timeline.resume_at(n, self._keepalive)
        due = round(self._clock.elapsed() * SAMPLE_RATE) // OPUS_FRAME * OPUS_FRAME
        return self._timeline.resume_at(n, min(due, self._keepalive))


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> None:
    """Run `callback` on `loop` from any thread; nothing if the loop has closed (the session is gone)."""
    try:
        loop.call_soon_threadsafe(callback)
    except RuntimeError:
        pass


class AvatarVideoTrack(MediaStreamTrack):
    """25 fps frames of the avatar: utterance frames while speaking, idle frames otherwise."""

    kind = "video"

    def __init__(self, clock: SessionClock, timeline: Timeline, performer: GuardedPerformer,
                 frames: EncoderFrames, executor: Executor | None = None, load: FrameLoad | None = None,
                 on_render: Callable[[float], None] | None = None, shared: SharedIdle | None = None) -> None:
        """`on_render(seconds)` is told the CPU time each frame took to render and convert (for the metrics);
        `shared`: the service's idle stream, sent while listening (None: every frame is encoded here)."""
        super().__init__()
        self._shared = shared
        self.may_share: Callable[[], bool] = lambda: True   # whether the viewer can take the stream now (api.py)
        self._share_lock = threading.Lock()
        self._offset: int | None = None   # stream frame = k + offset: the stream's frame due with ours
        self._join: int | None = None     # the frame k where this session takes up the stream (planned to)
        self._retry = 0                   # no way in is planned before this frame (the last try failed)
        self._backoff = 0                 # frames to wait before taking the stream again after a PLI
        self._joined = 0                  # the frame k where the session last took up the stream
        self._must_leave = False          # set by the event loop: a frame of the stream could not be sent
        self._stream_failed = False       # the stream raised: this session encodes its own frames from then on
        self._in_stream = False           # frames from _join on are the stream's, so far
        self._last_sent = -1              # the last frame k handed over, and whether it was the stream's
        self._last_sent_shared = False
        self.frames_shared = 0            # frames sent from the shared stream
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
        self._encoder: AvatarVp8Encoder | None = None     # see encode_with
        self._keyframe_requests: Callable[[], bool] = lambda: False
        self._on_encode: Callable[[float], None] | None = None

    def _make_frame(self, k: int) -> VideoFrame | Packet:
        """Worker thread: decide what frame k shows, render it and convert it for the encoder (or take the
        shared idle stream's encoded frame)."""
        start = time.thread_time()
        index = self._timeline.frame_index(k)
        if index is None:
            if self._shared is not None and not self._stream_failed:
                try:
                    packet = self._from_stream(k)
                except Exception:                # never the session's video: its own frames from now on
                    log.exception("the shared idle stream failed; this session encodes its own frames")
                    self._stream_failed, self._must_leave = True, True
                    packet = None
                if packet is not None:
                    return packet
            index = self._performer.idle_index()
        else:
            self._leave_stream()
            if index is HOLD:
                index = self._performer.shown
            else:
                self._performer.show(index)
        frame = self._frames.frame(index, self._performer.render)
        frame.pts = k * (VIDEO_CLOCK_RATE // FPS)
        frame.time_base = VIDEO_TIME_BASE
        if self._on_render is not None:
            self._on_render(time.thread_time() - start)
        return frame

    def _from_stream(self, k: int) -> Packet | None:
        """Worker thread, listening: the shared stream's frame for k, or None for a frame of our own (and then,
        if not on the way into the stream yet, the way in is planned: see streaming/shared_idle.py)."""
        shared = self._shared
        assert shared is not None
        with self._share_lock:
            if self._must_leave:                         # the event loop could not send a frame of the stream
                self._must_leave = False
                self._out_of_stream()
            if self._offset is None:
                self._offset = round(shared.now() + (k / FPS - self._clock.elapsed()) * FPS) - k
            number = k + self._offset
            if not self.may_share():                     # the viewer asked for a keyframe: ours, not the stream's
                if self._join is not None or self._in_stream:
                    self._backoff = min(max(REJOIN_BACKOFF, 2 * self._backoff), MAX_REJOIN_BACKOFF)
                    self._retry = k + self._backoff
                return self._out_of_stream()
            if self._join is None:                       # plan the way in, along our own listening frames
                if k < self._retry:
                    return None
                join = shared.join_point(number + TRANSITION_FRAMES)
                target = shared.index(join)
                if (target is not None and self._performer.steer(join - number + 1, target)
                        and shared.schedule(join)):
                    self._join = join - self._offset
                else:                                    # busy, out of reach or no keyframe there: try again soon
                    self._retry = k + TRANSITION_FRAMES // 5
                return None
            if k < self._join:
                return None
            if not (self._in_stream or k == self._join):  # missed the way in: plan it again
                self._join = None
                return None
            entry = shared.frame(number)
            if entry is None or (not self._in_stream and not entry.keyframe):
                return self._out_of_stream()             # fell behind the stream, or no keyframe: again
            if not self._performer.follow(entry.index):  # a reply is being planned from the frame on screen
                return self._out_of_stream()
            if not self._in_stream:
                self._in_stream, self._joined = True, k
            elif k - self._joined >= MAX_REJOIN_BACKOFF:  # a long stay in the stream: forget earlier PLIs
                self._backoff = 0
        packet = Packet(entry.data)
        packet.pts = k * (VIDEO_CLOCK_RATE // FPS)
        packet.time_base = VIDEO_TIME_BASE
        packet.is_keyframe = entry.keyframe
        return packet

    def _leave_stream(self) -> None:
        """Worker thread: the next frames are our own."""
        with self._share_lock:
            self._out_of_stream()

    def _out_of_stream(self) -> None:   # caller holds _share_lock
        self._join, self._in_stream = None, False

    def _sendable(self, k: int, frame: VideoFrame | Packet) -> bool:
        """Whether frame k can go out as decided: a stream frame other than a keyframe only right after the
        stream's frame k - 1 (the viewer's decoder holds what it refers to)."""
        return (not isinstance(frame, Packet) or frame.is_keyframe
                or (self._last_sent == k - 1 and self._last_sent_shared))

    def recent_fps(self) -> float:
        """Frames handed to the encoder per second over the last RATE_WINDOW seconds."""
        horizon = time.monotonic() - RATE_WINDOW
        return sum(1 for t in self._sent_at if t >= horizon) / RATE_WINDOW

    def _submit(self, k: int) -> tuple[int, int, asyncio.Future]:
        loop = asyncio.get_running_loop()
        return k, self._timeline.generation, loop.run_in_executor(self._executor, self._make_frame, k)

    async def recv(self) -> VideoFrame | Packet:
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
        encode_here = self._encoder is not None and isinstance(frame, VideoFrame)
        if not encode_here:              # else frame k + 1 is rendered in the job that encodes frame k
            self._ahead = self._submit(k + 1)
        await self._clock.sleep_until(k / FPS)
        decided, committed = ahead[1], False
        for _ in range(3):  # an utterance placed on frame k (or a barge-in) since it was decided, or a stream
            if self._sendable(k, frame):                  # frame that cannot follow: decide it again
                committed = self._timeline.sent(k, decided)
                if committed:
                    break
            else:
                self._must_leave = True
            _, decided, again = self._submit(k)
            frame = await again
        if not committed:  # still not (a race with another replan): leave the stream if need be, and send it
            if not self._sendable(k, frame):
                self._must_leave = True
                frame = await self._submit(k)[2]
                if not self._sendable(k, frame):
                    raise RuntimeError(f"frame {k}: no frame of its own after leaving the shared idle stream")
            self._timeline.sent(k)
        self._next = k + 1
        self._last_sent, self._last_sent_shared = k, isinstance(frame, Packet)
        self.frames_shared += self._last_sent_shared
        self.frames_sent += 1
        self._sent_at.append(time.monotonic())
        late = self._clock.elapsed() > (k + 1) / FPS
        self.frames_late += late
        if self._load is not None:
            self._load.record(late)
        if self._encoder is not None and isinstance(frame, VideoFrame):
            return await self._encode(k, frame, render_next=encode_here)
        if encode_here:                  # decided again, into a frame of the stream: k + 1 is not on its way yet
            self._ahead = self._submit(k + 1)
        return frame

    def encode_with(self, encoder: AvatarVp8Encoder, keyframe_requests: Callable[[], bool],
                    on_encode: Callable[[float], None] | None = None) -> None:
        """Encode this track's own frames here, with `encoder` (the sender's, which packs what `recv` returns),
        each with the next frame's render in one job of the render pool: one hand-off to a worker thread a
        frame (about 0.14 ms of CPU each), where aiortc would add a second to encode it on its own executor.
        `keyframe_requests()` takes the viewer's request for a keyframe (a PLI), if any; `on_encode(seconds)`
        is told the CPU time of each encode (for the metrics). Call before the first frame."""
        self._encoder, self._keyframe_requests, self._on_encode = encoder, keyframe_requests, on_encode

    async def _encode(self, k: int, frame: VideoFrame, render_next: bool) -> Packet:
        """Frame k through the encoder (a keyframe if the viewer asked for one), and, if `render_next`, frame
        k + 1 decided and rendered ahead in the same job; returns frame k's packet."""
        assert self._encoder is not None
        encoder, force, generation = self._encoder, self._keyframe_requests(), self._timeline.generation

        def job() -> tuple[Packet, VideoFrame | Packet | None]:
            start = time.thread_time()
            packet = encoder.encode_packet(frame, force)
            if self._on_encode is not None:
                self._on_encode(time.thread_time() - start)
            return packet, self._make_frame(k + 1) if render_next else None
        packet, ahead = await asyncio.get_running_loop().run_in_executor(self._executor, job)
        if render_next:
            rendered = asyncio.get_running_loop().create_future()
            rendered.set_result(ahead)
            self._ahead = (k + 1, generation, rendered)
        return packet

    def stop(self) -> None:
        if self._ahead is not None:
            self._ahead[2].cancel()
            self._ahead = None
        super().stop()
