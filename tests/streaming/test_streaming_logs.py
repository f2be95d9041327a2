"""Warnings and errors are logged once per kind per interval, with a count of what was left out."""
from __future__ import annotations

import errno
import io
import logging

from streaming.logs import RateLimitFilter, install_rate_limit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(name: str, level: int, msg: str, *args, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, None) if exc is not None else None
    return logging.LogRecord(name, level, __file__, 1, msg, args, exc_info)


def test_one_record_per_kind_per_interval() -> None:
    clock = Clock()
    limiter = RateLimitFilter(interval=10.0, clock=clock)
    emfile = OSError(errno.EMFILE, "Too many open files")
    passed = [limiter.filter(record("asyncio", logging.ERROR, "socket.accept() out of system resource", exc=emfile))
              for _ in range(1000)]
    assert passed.count(True) == 1 and passed[0]
    # another kind: another logger, template, level or exception type
    assert limiter.filter(record("uvicorn.error", logging.ERROR, "socket.accept() out of system resource"))
    assert limiter.filter(record("asyncio", logging.WARNING, "socket.accept() out of system resource"))
    assert limiter.filter(record("asyncio", logging.ERROR, "Exception in callback %s", "x"))
    assert not limiter.filter(record("asyncio", logging.ERROR, "Exception in callback %s", "y"))  # same template
    # below WARNING nothing is held back (the access log has one template for all requests)
    assert all(limiter.filter(record("uvicorn.access", logging.INFO, '%s - "%s"', "a", "b")) for _ in range(50))
    clock.now = 10.5
    late = record("asyncio", logging.ERROR, "socket.accept() out of system resource", exc=emfile)
    assert limiter.filter(late)
    assert "[999 more like this in the last 10 s were not logged]" in late.getMessage()
    assert not limiter.filter(record("asyncio", logging.ERROR, "socket.accept() out of system resource", exc=emfile))


def test_installed_on_handlers_it_holds_back_a_flood_of_tracebacks() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    parent, child = logging.getLogger("ratelimit_test"), logging.getLogger("ratelimit_test.child")
    parent.addHandler(handler)
    parent.propagate = False
    second = io.StringIO()
    parent.addHandler(logging.StreamHandler(second))                  # one record, two handlers, one decision
    try:
        limiter = install_rate_limit(interval=10.0, loggers=("ratelimit_test",), last_resort=False)
        for _ in range(500):
            try:
                raise OSError(errno.EMFILE, "Too many open files")
            except OSError:
                child.exception("accept failed")                       # a child's records reach parent's handlers
        child.warning("something else")
        assert out.getvalue().count("Traceback") == 1 and out.getvalue().count("accept failed") == 1
        assert "something else" in out.getvalue()
        assert out.getvalue() == second.getvalue()
        assert len(out.getvalue()) < 2000
    finally:
        for each in list(parent.handlers):
            each.removeFilter(limiter)
            parent.removeHandler(each)
        parent.propagate = True


def test_the_service_logs_its_own_info_lines_but_not_the_libraries() -> None:
    import subprocess
    import sys
    from pathlib import Path

    code = ("import logging\nfrom streaming.logs import configure_logging\nconfigure_logging()\n"
            "logging.getLogger('streaming.session').info('session end {}')\n"
            "logging.getLogger('aioice.ice').info('Connection(0) Check CandidatePair')\n"
            "logging.getLogger('aiortc').warning('a library warning')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert "INFO streaming.session: session end {}" in done.stderr
    assert "a library warning" in done.stderr and "CandidatePair" not in done.stderr
