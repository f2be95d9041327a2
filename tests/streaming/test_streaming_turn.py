"""TURN: the aiortc client and the service, both held to relay candidates (ICE transport policy "relay"),
meet through a real coturn on loopback in a network namespace of the test's own, with the time-limited
credentials the service hands out (GET /ice, coturn's shared-secret scheme)."""
from __future__ import annotations

from pathlib import Path

import pytest

from test_streaming_browser import run_driver

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


def test_aiortc_client_gets_video_and_audio_through_the_relay(tmp_path: Path) -> None:
    result = run_driver("/", tmp_path, "fake", "--turn", "--client", "aiortc")
    ice = result["ice"]
    assert ice["offered"] and set(ice["offered"]) == {"relay"}, ice
    assert ice["answered"] and set(ice["answered"]) == {"relay"}, ice    # the service's answer: relay only
    assert ice["pair"] == ["relay", "relay"], ice
    assert result["turn_allocations"] >= 2, result["turn_log_tail"]
    assert 20 <= result["fps"] <= 30, result
    assert result["audio_after_message"] is not None, result             # the reply was heard
    assert result["reply"], result
