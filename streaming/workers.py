"""Where work runs: the media's own event loop, and thread pools for CPU work (bot replies, speech and motion
planning) with a bounded queue in front.

aiortc encodes frames on the event loop's default executor and the tracks render on the render pool; a chat
flood queued there would freeze every session's video. Work here runs on its own few threads, and when
`max_pending` jobs already wait, one more is refused at once (`Busy`) instead of waiting without bound.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
BUSY_RETRY_AFTER = 2   # seconds a refused caller is told to wait


class Busy(RuntimeError):
    """The pool's queue is full: try again shortly."""


class BoundedPool:
    """`workers` threads; at most `workers + max_pending` jobs running or waiting."""

    def __init__(self, name: str, workers: int, max_pending: int) -> None:
        self.name = name
        self.capacity = workers + max_pending
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._in_flight = 0   # jobs submitted and not done (a cancelled waiting job is done at once)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def full(self) -> bool:
        """A job submitted now would be refused."""
        return self._in_flight >= self.capacity

    async def run(self, fn: Callable[..., T], *args) -> T:
        """`fn(*args)` on a worker; raises Busy at once when the queue is full."""
        with self._lock:
            if self._in_flight >= self.capacity:
                raise Busy(f"busy ({self.name}), try again in a moment")
            self._in_flight += 1
        try:
            future = self._executor.submit(fn, *args)
        except BaseException:
            self._done(None)
            raise
        future.add_done_callback(self._done)
        return await asyncio.wrap_future(future)   # cancelling the caller cancels a job still waiting

    def post(self, fn: Callable[..., object], *args) -> None:
        """Fire and forget a small job (e.g. the bot forgetting a conversation), outside the bound."""
        try:
            self._executor.submit(fn, *args)
        except RuntimeError:  # shut down: the app is stopping and forgets everything anyway
            pass

    def _done(self, _: Future | None) -> None:
        with self._lock:
            self._in_flight -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


@dataclass
class Workers:
    """The pools a session's turn uses: `bot` for replies, `speech` for synthesis and motion planning."""

    bot: BoundedPool
    speech: BoundedPool

    @classmethod
    def create(cls, bot_workers: int = 2, speech_workers: int = 2, max_pending: int = 16) -> Workers:
        return cls(BoundedPool("bot", bot_workers, max_pending), BoundedPool("speech", speech_workers, max_pending))

    def shutdown(self) -> None:
        self.bot.shutdown()
        self.speech.shutdown()


class MediaLoop:
    """An event loop on its own thread for the peer connections, their tracks and conversations.

    HTTP traffic runs on the server's loop: a burst of requests there makes one loop iteration last
    hundreds of milliseconds, and every frame needs a few iterations. On their own loop the frames wait at
    most for the interpreter to switch threads. aiortc encodes the frames a track hands it on this loop's
    default executor; the service's video tracks encode their own (streaming/tracks.py), so it idles there.
    """

    def __init__(self, encoder_workers: int = 2) -> None:
        self.loop = asyncio.new_event_loop()
        self._encoders = ThreadPoolExecutor(max_workers=encoder_workers, thread_name_prefix="media")
        self.loop.set_default_executor(self._encoders)
        self._thread = threading.Thread(target=self.loop.run_forever, name="media-loop", daemon=True)
        self._thread.start()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the media loop and wait for it from the calling loop (cancelling it cancels both)."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def close(self) -> None:
        """Stop the loop (close the sessions on it first); what aiortc still has running there is cancelled."""
        await self.run(_cancel_others())
        self.loop.call_soon_threadsafe(self.loop.stop)
        await asyncio.to_thread(self._thread.join, 10)
        self._encoders.shutdown(wait=False, cancel_futures=True)
        if not self._thread.is_alive():
            self.loop.close()


async def _cancel_others(timeout: float = 2.0) -> None:
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=timeout)
