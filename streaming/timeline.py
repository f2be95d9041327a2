"""What one session shows and says at each instant: idle, or an utterance placed on the session clock.

Both tracks read the same placement: video frame k plays the utterance's frame k - start_frame, audio sample n
plays its sample n - start_frame * SAMPLES_PER_FRAME, so mouth and voice cannot drift apart. The video track
asks from a worker thread, the audio track and the session from the event loop, hence the lock.

The video track decides each frame before it is due (and the next one while it waits). An utterance may start
on any frame not yet sent: placing it on a decided frame bumps `generation`, and the track decides that frame
again rather than send the idle one.
"""
from __future__ import annotations

import enum
import math
import threading
from dataclasses import dataclass

import numpy as np

from avatar.types import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, Utterance

class Hold(enum.Enum):
    """frame_index()'s answer for "keep the frame on screen": an utterance is placed but has not started yet."""

    HOLD = "hold"


HOLD = Hold.HOLD


@dataclass(frozen=True)
class Placement:
    """An utterance pinned to the session clock, starting on a video frame boundary."""

    utterance: Utterance
    start_frame: int

    @property
    def start_sample(self) -> int:
        return self.start_frame * SAMPLES_PER_FRAME

    @property
    def end_frame(self) -> int:
        return self.start_frame + len(self.utterance.frame_indices)

    @property
    def end_sample(self) -> int:
        return self.start_sample + len(self.utterance.speech.audio.samples)

    @property
    def end_time(self) -> float:
        """Seconds after the session clock's t0 when both the last sample and the last frame have played."""
        return max(self.end_sample / SAMPLE_RATE, self.end_frame / FPS)


class Timeline:
    """The schedule of one session: at most one placed utterance; everything else is idle and silence."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._placement: Placement | None = None
        self._next_frame = 0     # first video frame whose content is not decided yet
        self._next_sent = 0      # first video frame not handed to the encoder yet
        self._next_sample = 0    # first audio sample not handed out yet
        self.generation = 0      # bumped by clear() and place(): frames decided before it are stale

    def place(self, utterance: Utterance) -> Placement:
        """Start `utterance` at the first video frame boundary that neither track has sent yet."""
        with self._lock:
            start = max(self._next_sent, math.ceil(self._next_sample / SAMPLES_PER_FRAME))
            self._placement = Placement(utterance, start)
            if start < self._next_frame:  # that frame was decided (idle) ahead of time: decide it again
                self.generation += 1
            return self._placement

    def sent(self, k: int) -> None:
        """The video track hands frame k to the encoder: it can no longer change."""
        with self._lock:
            self._next_sent = max(self._next_sent, k + 1)

    def clear(self) -> None:
        """Barge-in: drop the placed utterance; the next audio chunk and the next frame are idle."""
        with self._lock:
            self._placement = None
            self.generation += 1

    @property
    def placement(self) -> Placement | None:
        return self._placement

    def frame_index(self, k: int) -> int | Hold | None:
        """The driving frame for video frame `k`; None for an idle frame; HOLD just before an utterance.

        Holding matters because the motion planner has already planned the utterance from the frame on
        screen: idle frames asked for now would continue from the utterance's end instead.
        """
        with self._lock:
            self._next_frame = max(self._next_frame, k + 1)
            p = self._placement
            if p is None or k >= p.end_frame:
                return None
            if k < p.start_frame:
                return HOLD
            return int(p.utterance.frame_indices[k - p.start_frame])

    def audio(self, n: int, count: int) -> np.ndarray:
        """Samples n .. n+count as int16: the utterance where it overlaps, silence elsewhere."""
        with self._lock:
            self._next_sample = max(self._next_sample, n + count)
            p = self._placement
        out = np.zeros(count, np.int16)
        if p is not None:
            samples = p.utterance.speech.audio.samples
            lo, hi = max(n, p.start_sample), min(n + count, p.end_sample)
            if lo < hi:
                out[lo - n:hi - n] = samples[lo - p.start_sample:hi - p.start_sample]
        return out
