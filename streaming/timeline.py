"""What one session shows and says at each instant: idle, or a reply placed on the session clock.

A reply comes in segments (avatar/speaking.py: its first clause, then its sentences), placed as each is ready.
Both tracks read the same placement: within a segment, audio sample n plays its sample n - start_sample and
video frame k its frame k - start_frame, where start_frame is the video frame due nearest to start_sample; so
mouth and voice cannot drift apart, and are never more than half a frame (20 ms) from each other. A reply
starts on the first 10 ms audio packet not handed out yet (not on the next 40 ms frame boundary: that wait
was on the way to the first audio). Every segment but the last holds whole frames, so the next one starts
on the frame and sample where it ends, with the same offset between the two. The video track asks from a
worker thread, the audio track and the session from the event loop, hence the lock.

The video track decides each frame before it is due (and the next one while it waits). A segment may start
on any frame not yet sent: placing it on a decided frame bumps `generation`, and the track decides that frame
again rather than send the idle (or held) one.
"""
from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from avatar.types import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, Utterance
from streaming.codecs import OPUS_FRAME

class Hold(enum.Enum):
    """frame_index()'s answer for "keep the frame on screen": a reply is placed but has not started yet, or its
    next segment is still awaited."""

    HOLD = "hold"


HOLD = Hold.HOLD


@dataclass(frozen=True)
class Segment:
    """One piece of a reply pinned to the session clock: its audio starts on sample `start_sample`, its frames
    on the video frame due nearest to that sample."""

    utterance: Utterance
    start_sample: int

    @property
    def start_frame(self) -> int:
        return _nearest_frame(self.start_sample)

    @property
    def end_frame(self) -> int:
        return self.start_frame + len(self.utterance.frame_indices)

    @property
    def end_sample(self) -> int:
        return self.start_sample + len(self.utterance.speech.audio.samples)


class Placement:
    """A reply on the session clock: its segments so far, in order, each starting where the one before it ends
    (later only when it came too late for that). `more` while further segments are coming."""

    def __init__(self, first: Segment, more: bool) -> None:
        self.segments = [first]
        self.more = more

    @property
    def start_frame(self) -> int:
        return self.segments[0].start_frame

    @property
    def start_sample(self) -> int:
        return self.segments[0].start_sample

    @property
    def end_frame(self) -> int:
        return self.segments[-1].end_frame

    @property
    def end_sample(self) -> int:
        return self.segments[-1].end_sample

    @property
    def end_time(self) -> float:
        """Seconds after the session clock's t0 when both the last sample and the last frame placed so far have
        played."""
        return max(self.end_sample / SAMPLE_RATE, self.end_frame / FPS)


class Timeline:
    """The schedule of one session: at most one placed reply; everything else is idle and silence."""

    def __init__(self, now: Callable[[], float] | None = None) -> None:
        """`now()`: seconds on the session clock; a reply never starts before the 10 ms audio packet due then
        (the audio track hands nothing out while it pauses in silence, see streaming/tracks.py)."""
        self._lock = threading.Lock()
        self._now = now
        self.on_place: Callable[[], None] | None = None   # told (from any thread) after each reply is placed
        self._placement: Placement | None = None
        self._next_frame = 0     # first video frame whose content is not decided yet
        self._next_sent = 0      # first video frame not handed to the encoder yet
        self._next_sample = 0    # first audio sample not handed out yet
        self.generation = 0      # bumped when a decided frame must be decided again: frames decided before are stale
        self.epoch = 0           # bumped by clear(): a reply prepared before it is not placed

    def _first_free_sample(self) -> int:   # caller holds the lock
        """The first sample not handed out, not past, and whose nearest video frame has not been sent either."""
        now = 0 if self._now is None else -(-int(self._now() * SAMPLE_RATE) // OPUS_FRAME) * OPUS_FRAME
        return max(self._next_sample, now, self._next_sent * SAMPLES_PER_FRAME - SAMPLES_PER_FRAME // 2)

    def _pin(self, utterance: Utterance, start_sample: int) -> Segment:   # caller holds the lock
        segment = Segment(utterance, start_sample)
        if segment.start_frame < self._next_frame:  # that frame was decided (idle or held) ahead: decide it again
            self.generation += 1
        return segment

    def place(self, utterance: Utterance, more: bool = False, epoch: int | None = None) -> Placement | None:
        """Start `utterance` (a reply's first segment; `more` when others will follow) on the first sample that
        neither track has sent yet. None, and nothing placed, when `epoch` is given and a clear() came since it
        was read."""
        with self._lock:
            if epoch is not None and epoch != self.epoch:
                return None
            placement = self._placement = Placement(self._pin(utterance, self._first_free_sample()), more)
        if self.on_place is not None:
            self.on_place()
        return placement

    def extend(self, placement: Placement, utterance: Utterance, more: bool = False) -> Segment | None:
        """Append the reply's next segment where the last one ends (or at the first free sample, if that has
        gone by). None, and nothing placed, when `placement` is no longer the current one (a barge-in came)."""
        with self._lock:
            if placement is not self._placement:
                return None
            segment = self._pin(utterance, max(placement.end_sample, self._first_free_sample()))
            placement.segments.append(segment)
            placement.more = more
            return segment

    def finish(self, placement: Placement) -> None:
        """No more segments of `placement` will come (its last came, or preparing the rest failed)."""
        with self._lock:
            placement.more = False

    def sent(self, k: int, generation: int | None = None) -> bool:
        """The video track hands frame k to the encoder: it can no longer change. With the `generation` the
        frame was decided in: only if nothing was placed on a decided frame since (checked and committed at
        once, so a reply placed from another thread in between cannot lose its first frame); False, and
        nothing committed, otherwise: decide the frame again."""
        with self._lock:
            if generation is not None and generation != self.generation:
                return False
            self._next_sent = max(self._next_sent, k + 1)
            return True

    def clear(self) -> None:
        """Barge-in: drop the placed reply; the next audio chunk and the next frame are idle."""
        with self._lock:
            self._placement = None
            self.generation += 1
            self.epoch += 1

    @property
    def placement(self) -> Placement | None:
        return self._placement

    def frame_index(self, k: int) -> int | Hold | None:
        """The driving frame for video frame `k`; None for an idle frame; HOLD before the reply starts, and
        between its segments while the next one is awaited.

        Holding matters because the motion planner has already planned the reply from the frame on screen:
        idle frames asked for now would continue from the reply's end instead.
        """
        with self._lock:
            self._next_frame = max(self._next_frame, k + 1)
            p = self._placement
            if p is None or (k >= p.end_frame and not p.more):
                return None
            for segment in reversed(p.segments):
                if segment.start_frame <= k < segment.end_frame:
                    return int(segment.utterance.frame_indices[k - segment.start_frame])
            return HOLD

    def silent_after(self, n: int) -> bool:
        """Whether no reply is placed at or after sample `n`, nor is one still coming."""
        with self._lock:
            p = self._placement
            return p is None or (p.end_sample <= n and not p.more)

    def resume_at(self, n: int, due: int) -> int:
        """Where an audio track that paused in silence at sample `n` goes on, with the packet at `due` due now:
        there, or at the placed reply's first sample if that is earlier (none of it may be skipped)."""
        with self._lock:
            p = self._placement
            starts = [s.start_sample for s in p.segments if s.end_sample > n] if p is not None else []
            return max(n, min([due, *starts]))

    def quiet_ahead(self, n: int, count: int, quiet_count: int) -> bool:
        """Whether no segment overlaps samples n .. n+quiet_count; either way samples n .. n+count count as
        handed out (so a reply placed from now on starts after them)."""
        with self._lock:
            self._next_sample = max(self._next_sample, n + count)
            p = self._placement
            return not _overlaps(p, n, quiet_count)

    def audio(self, n: int, count: int, quiet_count: int | None = None) -> np.ndarray:
        """Samples n .. n+count as int16: the reply's segments where they overlap, silence elsewhere. With
        `quiet_count`: samples n .. n+quiet_count instead when no segment overlaps those (all silence)."""
        with self._lock:
            p = self._placement
            segments = list(p.segments) if p is not None else []
            if quiet_count is not None and not _overlaps(p, n, quiet_count):
                count = quiet_count
            self._next_sample = max(self._next_sample, n + count)
        out = np.zeros(count, np.int16)
        for segment in segments:
            samples = segment.utterance.speech.audio.samples
            lo, hi = max(n, segment.start_sample), min(n + count, segment.end_sample)
            if lo < hi:
                out[lo - n:hi - n] = samples[lo - segment.start_sample:hi - segment.start_sample]
        return out


def _nearest_frame(sample: int) -> int:
    """The video frame due nearest to `sample` (the later one at a tie)."""
    return (sample + SAMPLES_PER_FRAME // 2) // SAMPLES_PER_FRAME


def _overlaps(placement: Placement | None, n: int, count: int) -> bool:
    """Whether a segment of `placement` has samples within n .. n+count."""
    return placement is not None and any(s.start_sample < n + count and n < s.end_sample for s in placement.segments)
