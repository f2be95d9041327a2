"""Tests only: make aioice offer 127.0.0.1 as its one host candidate, so WebRTC stays on loopback.

aioice leaves 127.0.0.1 out of its host candidates, so without this a peer on loopback (or in a network
namespace with only `lo` up) has nothing to connect to. The switch is process-wide and undone on exit.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import aioice.ice


def _loopback_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return ["127.0.0.1"] if use_ipv4 else []


@contextmanager
def loopback_only(enabled: bool = True) -> Iterator[None]:
    """While active, every new ICE agent in this process gathers 127.0.0.1 only."""
    if not enabled:
        yield
        return
    original = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = _loopback_addresses
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = original
