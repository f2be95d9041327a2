"""One session's performer behind a lock, so planning on a worker never races with idle frames.

`speak` (speech synthesis plus motion planning of a reply, piece by piece) holds the lock for its whole run;
meanwhile the video keeps its pace by repeating the frame on screen instead of waiting: a short still moment
while the avatar "thinks" rather than a stalled stream. A barge-in is only noted here and applied under the lock before the
planner's next use, so it never blocks the event loop.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Protocol

import numpy as np

from avatar.types import Utterance


class PerformerLike(Protocol):
    """What a session needs from `avatar.pipeline.Performer`."""

    def prepare_stream(self, text: str) -> Iterator[tuple[Utterance, bool]]: ...
    def idle(self, n: int) -> np.ndarray: ...
    def idle_towards(self, n: int, target: int) -> bool: ...
    def follow(self, index: int) -> None: ...
    def interrupt(self, current: int | None = None) -> None: ...
    def render(self, index: int) -> np.ndarray: ...


class Engine(Protocol):
    """What the service needs from `avatar.pipeline.AvatarEngine`."""

    @property
    def frame_size(self) -> tuple[int, int]: ...
    @property
    def name(self) -> str: ...
    @property
    def consent(self) -> tuple[str, ...]: ...
    def performer(self, seed: int = 0) -> PerformerLike: ...


class GuardedPerformer:
    """Thread-safe access to one performer's motion planner; rendering itself needs no lock."""

    def __init__(self, performer: PerformerLike) -> None:
        self._performer = performer
        self._lock = threading.Lock()
        self._interrupted = False
        self._shown = int(performer.idle(1)[0])

    @property
    def shown(self) -> int:
        """The driving frame most recently put on screen."""
        return self._shown

    def show(self, index: int) -> None:
        self._shown = int(index)

    def interrupt(self) -> None:
        """Barge-in: the planner drops back to listening from the frame on screen before its next use."""
        self._interrupted = True

    def _apply_interrupt(self) -> None:  # caller holds the lock
        if self._interrupted:
            self._interrupted = False
            self._performer.interrupt(current=self._shown)

    def speak(self, text: str, accept: Callable[[Utterance, bool], bool]) -> None:
        """Prepare `text` piece by piece, handing each segment to `accept(segment, more)` as soon as it is ready;
        stops early when `accept` returns False (the turn is over). Blocking: call from a worker thread."""
        with self._lock:
            self._apply_interrupt()
            for segment, more in self._performer.prepare_stream(text):
                if not accept(segment, more):
                    return

    def idle_index(self) -> int:
        """The next idle driving frame, or the one on screen again while the planner is busy."""
        if self._lock.acquire(blocking=False):
            try:
                self._apply_interrupt()
                self._shown = int(self._performer.idle(1)[0])
            finally:
                self._lock.release()
        return self._shown

    def steer(self, n: int, target: int) -> bool:
        """Plan the next `n` idle frames to end on driving frame `target`; False when the planner is busy or
        cannot reach it."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            self._apply_interrupt()
            return self._performer.idle_towards(n, target)
        finally:
            self._lock.release()

    def follow(self, index: int) -> bool:
        """Put driving frame `index` on screen as the next idle frame, chosen elsewhere (the shared idle
        stream); the planner continues from it. False, and the frame on screen kept, while it is busy."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            self._apply_interrupt()
            self._performer.follow(index)
            self._shown = int(index)
            return True
        finally:
            self._lock.release()

    def render(self, index: int) -> np.ndarray:
        return self._performer.render(index)
