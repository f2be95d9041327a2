"""Offers the service cannot complete get 400 with a JSON detail, never 500, and hold no slot.

The broken offers are mutations of a real offer made here by an aiortc client, one fault each: no DTLS
fingerprint or ICE credentials, a BUNDLE group naming a missing mid, lines aiortc's parser chokes on, ...
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable

import httpx
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from streaming.app import create_app
from streaming.offers import check_offer
from harness.probe import AvatarProbe
from streaming_support import ToneEngine, ToneResponder, free_port, loopback_settings, serve_in_thread

pytestmark = pytest.mark.timeout(120)


def drop(prefix: str) -> Callable[[str], str]:
    """Remove every line starting with `prefix`."""
    return lambda sdp: "".join(line for line in sdp.splitlines(keepends=True) if not line.startswith(prefix))


def sub(pattern: str, replacement, count: int = 0) -> Callable[[str], str]:
    """re.sub line by line (`$` is the end of a line, before its CRLF)."""
    def mutate(sdp: str) -> str:
        return re.sub(pattern, replacement, sdp.replace("\r\n", "\n"), count=count, flags=re.M).replace("\n", "\r\n")
    return mutate


def insert_after(pattern: str, line: str) -> Callable[[str], str]:
    """Add `line` after the first line matching `pattern`."""
    return sub(f"^({pattern}.*)$", lambda m: m.group(1) + "\n" + line, count=1)


BROKEN: dict[str, Callable[[str], str]] = {
    "no DTLS fingerprint": drop("a=fingerprint:"),
    "fingerprint with md5": sub(r"^a=fingerprint:sha-\d+ ", "a=fingerprint:md5 "),
    "fingerprint not hex": sub(r"^(a=fingerprint:sha-\d+ )[0-9A-F]{2}", r"\1ZZ"),
    "fingerprint cut short": sub(r"^(a=fingerprint:sha-\d+ [0-9A-F:]{20}).*$", r"\1"),
    "fingerprint without value": sub(r"^a=fingerprint:.*$", "a=fingerprint:sha-256"),
    "no ice-ufrag": drop("a=ice-ufrag:"),
    "no ice-pwd": drop("a=ice-pwd:"),
    "no ICE credentials": lambda sdp: drop("a=ice-pwd:")(drop("a=ice-ufrag:")(sdp)),
    "ice-ufrag too short": sub(r"^a=ice-ufrag:.*$", "a=ice-ufrag:ab"),
    "ice-pwd too short": sub(r"^a=ice-pwd:.*$", "a=ice-pwd:abcdef"),
    "ice-ufrag with odd characters": sub(r"^a=ice-ufrag:.*$", "a=ice-ufrag:ab!c;d"),
    "ice-pwd with odd characters": sub(r"^a=ice-pwd:.*$", "a=ice-pwd:" + "a b" * 10),
    "BUNDLE names a missing mid": sub(r"^(a=group:BUNDLE .*)$", r"\1 7"),
    "BUNDLE names only missing mids": sub(r"^a=group:BUNDLE .*$", "a=group:BUNDLE x y"),
    "all media share one mid": sub(r"^a=mid:.*$", "a=mid:0"),
    "no a=mid": drop("a=mid:"),
    "no a=setup": drop("a=setup:"),
    "a=setup unknown": sub(r"^a=setup:.*$", "a=setup:bogus"),
    "a=setup holdconn": sub(r"^a=setup:.*$", "a=setup:holdconn"),
    "no a=rtcp-mux": drop("a=rtcp-mux"),
    "m= port not a number": sub(r"^m=video \d+", "m=video abc", count=1),
    "payload type 300": sub(r"^(m=video \d+ \S+) \d+", r"\1 300", count=1),
    "payload type not a number": sub(r"^(m=video \d+ \S+) \d+", r"\1 xx", count=1),
    "m= line without formats": sub(r"^(m=video \d+ \S+) .*$", r"\1", count=1),
    "video over RTP/AVP": sub(r"^m=video (\d+) \S+", r"m=video \1 RTP/AVP", count=1),
    "no codecs at all": drop("a=rtpmap:"),
    "unknown codecs only": sub(r"^a=rtpmap:(\d+) \S+/(\d+)", r"a=rtpmap:\1 FOO/\2"),
    "rtpmap without clock rate": sub(r"^a=rtpmap:(\d+) ([^/\s]+)/\d+\S*$", r"a=rtpmap:\1 \2", count=1),
    "fmtp for a payload type not offered": insert_after("a=rtpmap:", "a=fmtp:55 x=1"),
    "ssrc not a number": insert_after("a=mid:", "a=ssrc:abc cname:x"),
    "extmap id not a number": insert_after("a=mid:", "a=extmap:abc urn:ietf:params:rtp-hdrext:sdes:mid"),
    "candidate garbage": insert_after("a=mid:", "a=candidate:garbage"),
    "candidate port not a number": insert_after("a=mid:", "a=candidate:1 1 UDP 2130706431 127.0.0.1 port typ host"),
    "c= with an unknown address type": sub(r"^c=IN IP4 ", "c=IN IP5 "),
    "rtcp port not a number": insert_after("a=mid:", "a=rtcp:abc IN IP4 0.0.0.0"),
    "sctp-port not a number": sub(r"^a=sctp-port:.*$", "a=sctp-port:abc"),
    "max-message-size not a number": sub(r"^a=max-message-size:.*$", "a=max-message-size:abc"),
    "no sctp-port": drop("a=sctp-port:"),
    "neither audio nor video": lambda sdp: sub(r"^m=(audio|video) ", "m=text ")(sdp),
    "unknown media kind": sub(r"^m=audio ", "m=image ", count=1),
    "cut in half": lambda sdp: sdp[: len(sdp) // 2],
    "NUL in a line": sub(r"^(a=mid:.*)$", "\\1\x00", count=1),
    "a line that is not type=value": insert_after("a=mid:", "garbage"),
    "version 1": sub(r"^v=0", "v=1"),
    "video without VP8": sub(r"^a=rtpmap:(\d+) VP8/", r"a=rtpmap:\1 FOO/"),
    "audio without Opus": sub(r"^a=rtpmap:(\d+) opus/", r"a=rtpmap:\1 FOO/"),
}


async def make_offer() -> str:
    """A real offer: recvonly video and audio and a "chat" channel, like the page's."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")
        pc.createDataChannel("chat")
        await pc.setLocalDescription(await pc.createOffer())
        return pc.localDescription.sdp
    finally:
        await pc.close()


@pytest.fixture
def offer_server() -> str:
    app = create_app(loopback_settings(max_sessions=2), engine=ToneEngine(), responder=ToneResponder())
    with serve_in_thread(app, free_port()) as url:
        yield url


async def test_broken_offers_get_400_json_and_a_good_one_still_works(offer_server: str) -> None:
    good = await make_offer()
    check_offer(good)                                   # the pre-check passes what aiortc makes
    assert len(BROKEN) >= 30
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=offer_server, timeout=20) as http:
        for name, mutate in BROKEN.items():
            sdp = mutate(good)
            assert sdp != good, f"the mutation {name!r} changed nothing"
            response = await http.post("/offer", json={"sdp": sdp, "type": "offer"})
            assert response.status_code == 400, (name, response.status_code, response.text)
            assert response.headers["content-type"] == "application/json", name
            detail = response.json()["detail"]
            assert detail.startswith("malformed SDP offer: "), (name, detail)
            print(f"{name}: {detail}")
        assert (await http.get("/health")).json()["sessions"] == 0   # no broken offer holds a slot
    print(f"{len(BROKEN)} broken offers in {time.monotonic() - started:.1f} s")

    probe = AvatarProbe(offer_server)
    try:
        await probe.start(settle=1.5)
        assert probe.received.recent_fps(1.0) > 20
    finally:
        await probe.close()


def answered_codecs(sdp: str, kind: str) -> list[str]:
    """The codec names the answer's m=`kind` section lists, in order."""
    section = sdp.split(f"m={kind} ", 1)[1].split("\r\nm=", 1)[0]
    return re.findall(r"^a=rtpmap:\d+ ([^/\s]+)/", section, flags=re.M)


async def test_an_offer_that_prefers_h264_is_answered_with_vp8_and_opus_only(offer_server: str) -> None:
    """The service encodes VP8 and Opus itself (streaming/codecs.py): the answer names nothing else, even
    when the offer lists H.264 first (as Safari does), and the stream plays."""
    probe = AvatarProbe(offer_server, video_codecs=["video/H264", "video/VP8", "video/rtx"])
    try:
        await probe.start(settle=1.5)
        assert "a=rtpmap:" in probe.pc.localDescription.sdp and "H264" in probe.pc.localDescription.sdp
        assert probe.pc.localDescription.sdp.index("H264") < probe.pc.localDescription.sdp.index("VP8")
        assert set(answered_codecs(probe.answer_sdp, "video")) == {"VP8", "rtx"}
        assert answered_codecs(probe.answer_sdp, "audio") == ["opus"]
        assert probe.received.recent_fps(1.0) > 20
    finally:
        await probe.close()
