"""One session's performer behind a lock, so planning on a worker never races with idle frames.

`prepare` (speech synthesis plus motion planning) holds the lock for its whole run; meanwhile the video
keeps its pace by repeating the last idle frame instead of waiting: a short still moment while the
avatar "thinks" rather than a stalled stream.
"""
from __future__ import annotations

import threading
from typing import Protocol

import numpy as np

from avatar.types import Utterance


class Performer(Protocol):
    """What a session needs from `avatar.pipeline.Performer`."""

    def prepare(self, text: str) -> Utterance: ...
    def idle(self, n: int) -> np.ndarray: ...
    def interrupt(self) -> None: ...
    def render(self, index: int) -> np.ndarray: ...


class Engine(Protocol):
    """What the service needs from `avatar.pipeline.AvatarEngine`."""

    @property
    def frame_size(self) -> tuple[int, int]: ...
    def performer(self, seed: int = 0) -> Performer: ...


class GuardedPerformer:
    """Thread-safe access to one performer's motion planner; rendering itself needs no lock."""

    def __init__(self, performer: Performer) -> None:
        self._performer = performer
        self._lock = threading.Lock()
        self._last_index = int(performer.idle(1)[0])

    def prepare(self, text: str) -> Utterance:
        """Blocking: call from a worker thread."""
        with self._lock:
            return self._performer.prepare(text)

    def interrupt(self) -> None:
        """Blocking (waits for a running prepare): call from a worker thread."""
        with self._lock:
            self._performer.interrupt()

    def idle_index(self) -> int:
        """The next idle driving frame, or the last one again while the planner is busy."""
        if self._lock.acquire(blocking=False):
            try:
                self._last_index = int(self._performer.idle(1)[0])
            finally:
                self._lock.release()
        return self._last_index

    def note_index(self, index: int) -> None:
        """Remember the frame shown, so a busy planner repeats what is on screen."""
        self._last_index = index

    def render(self, index: int) -> np.ndarray:
        return self._performer.render(index)
