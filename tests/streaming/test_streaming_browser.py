"""Headless Chromium in a loopback-only network namespace: the page and the kiosk, with the real parts
(and the fake ones for how a custom avatar is named)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from streaming_support import TURN_SERVER

DRIVER = Path(__file__).with_name("browser_driver.py")
CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(400)]


def namespaces_allowed() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    return subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True).returncode == 0


def run_driver(page: str, tmp_path: Path, parts: str = "real", *options: str) -> dict:
    """browser_driver.py in a new network namespace; its JSON result."""
    if "aiortc" not in options and not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (make test installs it as root)")
    if "--turn" in options and not Path(TURN_SERVER).exists():
        pytest.skip(f"coturn is not installed ({TURN_SERVER}; make test installs it as root)")
    if not namespaces_allowed():
        pytest.skip("cannot create a network namespace here (unshare -n needs root or user namespaces)")
    out = tmp_path / "result.json"
    proc = subprocess.run(["unshare", "-n", sys.executable, str(DRIVER), "--page", page, "--parts", parts,
                           "--out", str(out), *options], capture_output=True, text=True, timeout=360)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_page_plays_and_speaks_the_reply(tmp_path: Path) -> None:
    result = run_driver("/", tmp_path)
    assert "talking to an AI avatar: built-in avatar" in result["notice"], result["notice"]
    assert not result["video_paused"] and not result["video_muted"]
    assert result["fps_rvfc"] > 10, result                         # frames are presented, not just decoded
    assert 20 <= result["fps_decoded"] <= 30, result
    assert "Artificial Intelligence is the branch of engineering" in result["transcript"], result["transcript"]
    assert result["idle_analyser_peak"] < 0.01, result            # silence while listening
    idle = result["idle_audio"]              # sent as DTX, which Chromium does not conceal as lost (95% before)
    assert idle["concealedSamples"] < 0.5 * idle["totalSamplesReceived"], idle
    assert result["analyser_peak"] > 0.02, result                 # the spoken answer arrives as sound
    # and is played out: the received track's energy (getStats) rises well above the idle level
    assert result["speech_audio_energy"] > 10 * result["idle_audio_energy"] + 0.01, result


def test_kiosk_connects_captions_and_reconnects(tmp_path: Path) -> None:
    result = run_driver("/kiosk", tmp_path)
    assert "talking to an AI avatar: built-in avatar" in result["notice"], result["notice"]
    assert "consent" not in result["notice"], result["notice"]     # the built-in avatar shows no one's face
    assert 20 <= result["fps_decoded"] <= 30, result
    assert "Artificial Intelligence" in result["caption"], result
    assert result["analyser_peak"] > 0.02, result
    assert result["reconnected"] and result["connects"] >= 2, result


def test_page_names_a_custom_avatar_as_text_with_its_consent(tmp_path: Path) -> None:
    name = "Ada <b>Lovelace</b>"                                  # markup in a bundle's name stays text
    record = "subject: Ada Lovelace, consent file sha256 " + "ab" * 32
    result = run_driver("/", tmp_path, "fake", "--notice-only", "--name", name, "--consent", record)
    assert f"talking to an AI avatar: {name}." in result["notice"], result
    assert result["elements_in_name"] == 0, result
    assert "used with recorded consent" in result["notice"], result
    assert result["consent_records"] == [record], result


def test_page_plays_through_a_turn_relay_with_minted_credentials(tmp_path: Path) -> None:
    """Relay-only ICE on both sides through coturn: the page's credentials come from GET /ice."""
    result = run_driver("/", tmp_path, "fake", "--turn")
    ice = result["ice"]
    assert ice["policy"] == "relay", ice
    assert ice["offered"] and set(ice["offered"]) == {"relay"}, ice      # the page offered only relay candidates
    assert ice["answered"] and set(ice["answered"]) == {"relay"}, ice    # and so did the service's answer
    assert ice["pair"] == ["relay", "relay"], ice
    assert result["turn_allocations"] >= 2, result["turn_log_tail"]      # the page's and the service's
    assert 20 <= result["fps_decoded"] <= 30, result
    assert result["speech_audio_energy"] > 10 * result["idle_audio_energy"] + 0.01, result
