"""ICE candidates only on the interfaces the service serves: the HTTP bind address by default, or a set list."""
from __future__ import annotations

import aioice.ice
import pytest

from streaming.app import create_app
from harness import loopback_only
from streaming.ice import gather_only, ice_addresses
from harness.probe import AvatarProbe
from streaming.settings import ServiceSettings
from streaming_support import ToneEngine, ToneResponder, free_port, serve_in_thread

pytestmark = pytest.mark.timeout(90)


def candidate_addresses(sdp: str) -> list[str]:
    """The connection address of every a=candidate line (its fifth field)."""
    return [line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate:")]


def test_addresses_follow_the_bind_host_unless_set() -> None:
    assert ice_addresses("127.0.0.1") == ("127.0.0.1",)
    assert ice_addresses("0.0.0.0") is None and ice_addresses("::") is None       # every interface, as aioice does
    assert "127.0.0.1" in ice_addresses("localhost")
    assert ice_addresses("0.0.0.0", "127.0.0.1") == ("127.0.0.1",)                # a set list wins
    assert ice_addresses("127.0.0.1", "*") is None
    assert ice_addresses("0.0.0.0", loopback_only=True) == ("127.0.0.1",)
    with pytest.raises(ValueError, match="not an IP address"):
        ice_addresses("127.0.0.1", "lan-box")
    with pytest.raises(ValueError, match="not one of this machine's"):
        ice_addresses("192.0.2.77")                                              # TEST-NET-1: never local


def test_gather_only_unions_its_users_and_restores_aioice() -> None:
    original = aioice.ice.get_host_addresses
    with gather_only(None):
        assert aioice.ice.get_host_addresses is original
    with gather_only(("127.0.0.1",)), loopback_only(), gather_only(("::1",)):
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1", "::1"]
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
    assert aioice.ice.get_host_addresses is original


async def test_answer_from_a_loopback_service_offers_loopback_candidates_only() -> None:
    lan = aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True)   # what aioice alone would offer besides
    settings = ServiceSettings(host="127.0.0.1", port=0, max_sessions=2)  # ice_loopback_only stays off
    app = create_app(settings, engine=ToneEngine(), responder=ToneResponder())
    # What create_app's lifespan is to do for every bind address (see the report of issue 10).
    with gather_only(ice_addresses(settings.host)), serve_in_thread(app, free_port()) as url:
        probe = AvatarProbe(url)
        try:
            await probe.connect()                                        # ICE over 127.0.0.1 works
            addresses = candidate_addresses(probe.pc.remoteDescription.sdp)
        finally:
            await probe.close()
    print(f"answer candidates: {addresses}; aioice alone: {lan}")
    assert addresses and set(addresses) == {"127.0.0.1"}, addresses
