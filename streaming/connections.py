"""Connection hygiene for `avatar serve`: idle, header and body timeouts, a cap on open connections, fd budget.

uvicorn (0.54, h11) times a connection out only after a response, never one that sends nothing or sends its
request slowly; and its `limit_concurrency` counts connections and request tasks but answers 503 only once a
request has arrived, so idle connections pile up until the process runs out of file descriptors. The protocol
here keeps each connection to a deadline for the phase it is in, and holds the number of open connections
under a cap: past it the connection idle the longest is closed to make room, and when none is idle the new
one gets 503 at once.
"""
from __future__ import annotations

import asyncio
import resource
from dataclasses import dataclass, replace
from typing import ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
_FULL_BODY = b'{"detail": "too many open connections; try again in a moment"}'
FULL = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_FULL_BODY), _FULL_BODY))


@dataclass(frozen=True)
class HttpLimits:
    max_connections: int = 1000     # open HTTP connections; past it the longest-idle one goes, else 503
    idle_timeout: float = 5.0       # seconds a connection may wait for its next request
    header_timeout: float = 10.0    # seconds from a request's first byte to the end of its headers
    body_timeout: float = 30.0      # seconds from the end of a request's headers to the end of its body
    backlog: int = 2048             # connections the kernel queues; asyncio also accepts this many per wake-up


def raise_fd_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY:
        return target
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):     # e.g. a hard limit above the kernel's nr_open
            pass
    return soft


def within_fd_limit(limits: HttpLimits, fd_limit: int) -> HttpLimits:
    """`limits` fitted to a limit on open files: half of it at most for open connections (the rest is for
    sessions, models and files), and accepts in batches of a sixteenth at most, since asyncio accepts up to
    `backlog` connections at one wake-up before any of them reaches the protocol and its cap."""
    return replace(limits, max_connections=max(16, min(limits.max_connections, fd_limit // 2)),
                   backlog=max(16, min(limits.backlog, fd_limit // 16)))


class _Book:
    """The open connections of one server, and the idle ones among them, longest idle first."""

    def __init__(self) -> None:
        self.open: set[GuardedH11Protocol] = set()
        self.idle: dict[GuardedH11Protocol, None] = {}

    def make_room(self, limit: int) -> bool:
        """Close idle connections until fewer than `limit` are open; False when none is idle."""
        while len(self.open) >= limit:
            if not self.idle:
                return False
            oldest = next(iter(self.idle))
            self.forget(oldest)
            oldest.transport.close()
        return True

    def forget(self, connection: GuardedH11Protocol) -> None:
        self.open.discard(connection)
        self.idle.pop(connection, None)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline per phase of a connection and a shared cap; see `guarded_http`."""

    limits: ClassVar[HttpLimits] = HttpLimits()
    book: ClassVar[_Book] = _Book()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._phase: str | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._refused = not self.book.make_room(self.limits.max_connections)
        if self._refused:
            self.transport = transport
            transport.write(FULL)
            transport.close()
            return
        self.book.open.add(self)
        super().connection_made(transport)
        self._follow()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self.book.forget(self)
        self._cancel_deadline()
        if not self._refused:
            super().connection_lost(exc)

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self.book.forget(self)              # a WebSocket keeps its own time (pings)
        self._cancel_deadline()
        self._phase = "websocket"
        super().handle_websocket_upgrade(event)

    # --- phases and their deadlines ------------------------------------------------------------------

    def _current_phase(self) -> str:
        state = self.conn.their_state
        if state is h11.IDLE:
            return "headers" if self.conn.trailing_data[0] else "idle"
        if state is h11.SEND_BODY:
            return "body"
        return "app"                         # the app is answering, or the connection is ending

    def _follow(self) -> None:
        """Start the deadline of the phase the connection has just entered (a phase keeps its first deadline)."""
        if self._phase == "websocket" or self.transport.is_closing():
            return
        phase = self._current_phase()
        if phase == self._phase:
            return
        self._phase = phase
        self._cancel_deadline()
        if phase in ("idle", "headers"):     # nothing in progress: may be closed to make room
            self.book.idle.setdefault(self, None)
        else:
            self.book.idle.pop(self, None)
        seconds = {"idle": self.limits.idle_timeout, "headers": self.limits.header_timeout,
                   "body": self.limits.body_timeout}.get(phase)
        if seconds is not None:
            self._deadline = self.loop.call_later(seconds, self._expire)

    def _expire(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._phase == "body" and self.flow.read_paused:   # the app is not reading: not the client's fault
            self._deadline = self.loop.call_later(self.limits.body_timeout, self._expire)
            return
        if self._phase == "headers" or (self._phase == "body" and not self.cycle.response_started):
            self.transport.write(REQUEST_TIMEOUT)
        self.book.forget(self)
        self.transport.close()

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None


def guarded_http(limits: HttpLimits) -> type[GuardedH11Protocol]:
    """The protocol class for one server (`uvicorn.Config(http=...)`), with its own limits and connection book."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits, "book": _Book()})
