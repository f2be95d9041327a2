"""Warnings and errors logged once per kind per interval, not once per event.

A flood of broken clients, or a process short of file descriptors, can raise the same error thousands of times
a second (EMFILE tracebacks were seen at 5 MB/s). The filter lets the first record of a kind through, drops the
rest for `interval` seconds and then says how many it dropped. A kind is the logger, the level, the message
template (before its arguments are filled in) and the exception type. Records below WARNING always pass: the
access log has one template for every request.
"""
from __future__ import annotations

import logging
import threading
import time

SERVICE_LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access")   # root and uvicorn's own handlers
PRODUCT_LOGGERS = ("streaming", "avatar", "bot")                        # ours log at INFO; libraries at WARNING


def configure_logging() -> None:
    """The service's own log lines (a session's start and end, the bot's training...) at INFO on stderr, other
    libraries' (aioice logs every ICE check at INFO) from WARNING up. Leaves a root handler already set alone."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
    for name in PRODUCT_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)


class RateLimitFilter(logging.Filter):
    """A handler filter: one record per kind per `interval` seconds, the next one counts the dropped."""

    def __init__(self, interval: float = 10.0, clock=time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        self._kinds: dict[tuple, list] = {}            # kind -> [time let through, dropped since]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        # One record may reach several handlers that share this filter: decide once per record.
        decided = getattr(record, "_rate_limit_passed", None)
        if decided is not None:
            return decided
        exc_type = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else None
        kind = (record.name, record.levelno, str(record.msg), exc_type)
        now = self.clock()
        with self._lock:
            seen = self._kinds.get(kind)
            if seen is not None and now - seen[0] < self.interval:
                seen[1] += 1
                passed = False
            else:
                dropped = seen[1] if seen is not None else 0
                self._kinds[kind] = [now, 0]
                if len(self._kinds) > 10_000:            # bounded even when messages vary without end
                    self._kinds = {kind: self._kinds[kind]}
                if dropped and isinstance(record.msg, str):
                    record.msg += f" [{dropped} more like this in the last {self.interval:g} s were not logged]"
                passed = True
        record._rate_limit_passed = passed
        return passed


def install_rate_limit(interval: float = 10.0, loggers: tuple[str, ...] = SERVICE_LOGGERS,
                       last_resort: bool = True) -> RateLimitFilter:
    """Put one RateLimitFilter on every handler of `loggers` and on logging's last-resort handler.

    Filters go on handlers, not loggers: a logger's filter never sees records from its children (uvicorn.error
    logs through uvicorn's handler, asyncio and aiortc through the root's). Call it after logging is set up.
    """
    limiter = RateLimitFilter(interval)
    handlers = {handler for name in loggers for handler in logging.getLogger(name).handlers}
    if last_resort and logging.lastResort is not None:
        handlers.add(logging.lastResort)
    for handler in handlers:
        handler.addFilter(limiter)
    return limiter
