"""Tests only: make aioice offer 127.0.0.1 as its one host candidate, so WebRTC stays on loopback.

aioice leaves 127.0.0.1 out of its host candidates, so without this a peer on loopback (or in a network
namespace with only `lo` up) has nothing to connect to. The switch is process-wide; it stays on while any
user of it (an app, a test client) is active, and is undone when the last one leaves.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import aioice.ice

_lock = threading.Lock()
_users = 0
_original = aioice.ice.get_host_addresses


def _loopback_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return ["127.0.0.1"] if use_ipv4 else []


@contextmanager
def loopback_only(enabled: bool = True) -> Iterator[None]:
    """While active, every new ICE agent in this process gathers 127.0.0.1 only."""
    global _users
    if not enabled:
        yield
        return
    with _lock:
        _users += 1
        aioice.ice.get_host_addresses = _loopback_addresses
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                aioice.ice.get_host_addresses = _original
