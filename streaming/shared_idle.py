"""The service's shared idle stream: the avatar listening on one clock, encoded once for every idle viewer.

Every live session shows the same avatar at the same size, and a listening session shows idle frames (resting
mouth, blinks, a slow head drift) most of the time. Rendering and VP8-encoding those per session were the
largest share of a session's CPU (bench/sessions.py). Here one performer plans the idle frames on one
service-wide frame clock and one encoder encodes each once; a listening session sends the encoded frame due
as it is (aiortc packs it with the session's own picture ids and RTP timestamps), so an idle viewer costs the
sender neither a render nor an encode.

A decoder can take up a stream only at a keyframe. So a session that falls idle (when it starts, after a reply,
after a barge-in) asks for a keyframe a second or more ahead (`join_point`, `schedule`; keyframes
come at most one per MIN_KEY_GAP frames, so many viewers joining at once cost one keyframe a second, not one
each), steers its own listening to arrive on the stream's frame at that moment (`GuardedPerformer.steer`),
encodes its own frames until then, and sends the stream's frames from that keyframe on. A session leaves the
stream, and encodes its own frames again from a keyframe of its own, when it speaks (or plans to), when its
viewer asks for a keyframe (a PLI), and when it misses a frame of the stream. The stream is encoded at the
least bitrate aiortc's VP8 sender ever targets (SHARED_BITRATE), so it never sends a viewer more than the
session's own encoder would.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import av

from avatar.types import FPS
from aiortc import RTCRtpSender
from aiortc.codecs.vpx import MIN_BITRATE

from streaming.codecs import PLI_FLAG, keyframe_asked, vp8_codec, vp8_encode
from streaming.guarded import PerformerLike
from streaming.tracks import EncoderFrames

# bit/s of the stream: the least aiortc's VP8 sender ever targets, so no viewer gets more than its own sender
# would send it (a receiver's estimate, REMB, follows what it receives: for idle frames, less than this)
SHARED_BITRATE = MIN_BITRATE
MIN_KEY_GAP = FPS            # frames between two keyframes at least
KEEP = 2 * FPS               # frames of the stream kept (encoded) and planned behind the newest
MAX_CATCH_UP = 3             # frames encoded in one go to reach a frame asked for; further on, a new start


def viewer_can_take(sender: RTCRtpSender) -> Callable[[], bool]:
    """Whether the viewer of `sender` can take the stream now: not while it waits for a keyframe (a PLI), which
    only the session's own encoder makes. RuntimeError if this aiortc does not say (see codecs.keyframe_asked):
    a viewer whose PLIs went unanswered would keep a broken picture."""
    if not hasattr(sender, PLI_FLAG):
        raise RuntimeError("this aiortc's RTCRtpSender has no __force_keyframe to tell a PLI by "
                           "(the service is tested with aiortc 1.16)")
    return lambda: not keyframe_asked(sender)


@dataclass(frozen=True)
class SharedFrame:
    """Frame `number` of the stream: driving frame `index`, encoded (`data`: one VP8 frame)."""

    number: int
    index: int
    data: bytes
    keyframe: bool


class SharedIdle:
    """The shared idle stream of one avatar at one frame size. Thread-safe: sessions ask from their render
    workers, and the one that first asks for a frame encodes it (and any before it not encoded yet)."""

    def __init__(self, performer: PerformerLike, frames: EncoderFrames, bitrate: int = SHARED_BITRATE,
                 clock: Callable[[], float] = time.monotonic,
                 on_encode: Callable[[float], None] | None = None) -> None:
        """`on_encode(seconds)` is told the CPU time each frame took to render and encode (for the metrics)."""
        self.bitrate = bitrate
        self._performer = performer
        self._frames = frames
        self._clock = clock
        self._t0 = clock()
        self._on_encode = on_encode
        self._lock = threading.Lock()
        self._plan: deque[int] = deque()       # driving frames of stream frames _planned_from, _planned_from + 1, ...
        self._planned_from = 0
        self._encoded: dict[int, SharedFrame] = {}
        self._codec = None
        self._last = -1                        # the newest frame encoded (-1: none yet)
        self._keys: set[int] = set()           # frames to be encoded as keyframes (viewers join there)
        self._encoded_key = -MIN_KEY_GAP       # the newest keyframe encoded
        self.keyframes = 0                     # keyframes encoded

    def now(self) -> float:
        """The stream's frame clock now: frame n is due n / FPS seconds after its start."""
        return (self._clock() - self._t0) * FPS

    def index(self, number: int) -> int | None:
        """The driving frame of stream frame `number` (planned ahead as far as asked); None once it is gone."""
        with self._lock:
            return self._index(number)

    def join_point(self, earliest: int) -> int:
        """The first frame at or after `earliest` that is, or may become, a keyframe: where a viewer may take up
        the stream (nothing is scheduled: see `schedule`)."""
        with self._lock:
            earliest = max(earliest, self._last + 1)
            scheduled = [n for n in self._keys if n >= earliest]
            return min(scheduled) if scheduled else max(earliest, max(self._keys, default=self._encoded_key)
                                                        + MIN_KEY_GAP, self._encoded_key + MIN_KEY_GAP)

    def schedule(self, number: int) -> bool:
        """Make frame `number` a keyframe for a viewer to join at; False (nothing scheduled) when it was encoded
        already or another keyframe lies within MIN_KEY_GAP frames of it."""
        with self._lock:
            horizon = int(self.now()) - KEEP                  # keys nobody reached (no viewer asked) are dropped
            self._keys = {n for n in self._keys if n >= horizon}
            if number in self._keys:
                return True
            if number <= self._last or number < self._encoded_key + MIN_KEY_GAP:
                return False
            if any(abs(n - number) < MIN_KEY_GAP for n in self._keys):
                return False
            self._keys.add(number)
            return True

    def frame(self, number: int) -> SharedFrame | None:
        """Stream frame `number`, encoded in order after those before it. None when it is gone (more than KEEP
        behind the newest) or was never encoded or planned (nobody asked for it in time)."""
        with self._lock:
            if number <= self._last:
                return self._encoded.get(number)
            if self._index(number) is None:              # not planned: nobody watched it
                return None
            if number > self._last + MAX_CATCH_UP or self._last + 1 < self._planned_from:
                self._keys = {n for n in self._keys if n > number}   # nobody watched the frames between:
                self._keys.add(number)                               # start anew there
                self._last = number - 1
            while self._last < number:
                self._encode(self._last + 1)
            return self._encoded.get(number)

    # --- under the lock ---------------------------------------------------------------------------------------

    def _index(self, number: int) -> int | None:
        horizon = min(number, int(self.now())) - KEEP      # frames further back than this are never asked for
        while self._planned_from < horizon and self._plan:
            self._plan.popleft()
            self._planned_from += 1
        if number < self._planned_from:
            return None
        if number > self._planned_from + len(self._plan) + KEEP:   # nobody asked for a while: plan from there on
            self._plan.clear()
            self._planned_from = number
        while self._planned_from + len(self._plan) <= number:
            self._plan.extend(int(i) for i in self._performer.idle(FPS))
        return self._plan[number - self._planned_from]

    def _encode(self, number: int) -> None:
        start = time.thread_time()
        index = self._index(number)
        assert index is not None                   # frames are encoded in order, after those planned
        frame = self._frames.frame(index, self._performer.render)
        if self._codec is None:
            self._codec = vp8_codec(frame.width, frame.height, self.bitrate)
        keyframe = number in self._keys or self.keyframes == 0
        if keyframe:
            frame.pict_type = av.video.frame.PictureType.I
            self._keys.discard(number)
            self._encoded_key = number
            self.keyframes += 1
        frame.pts = number
        data = vp8_encode(self._codec, frame)
        self._encoded[number] = SharedFrame(number, index, data, keyframe)
        self._last = number
        for old in [n for n in self._encoded if n <= number - KEEP]:
            del self._encoded[old]
        if self._on_encode is not None:
            self._on_encode(time.thread_time() - start)

