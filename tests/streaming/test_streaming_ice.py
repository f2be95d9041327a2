"""The loopback-only ICE switch used by the tests: on while anyone uses it, off after the last one."""
from __future__ import annotations

import aioice.ice

from harness import loopback_only


def test_loopback_switch_nests_in_any_order() -> None:
    original = aioice.ice.get_host_addresses
    first, second = loopback_only(), loopback_only()
    first.__enter__()
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1"]
    second.__enter__()
    first.__exit__(None, None, None)                   # the first user leaves before the second
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1"]
    second.__exit__(None, None, None)
    assert aioice.ice.get_host_addresses is original
    assert "127.0.0.1" not in original(use_ipv4=True, use_ipv6=False)
