"""What the service watches on a peer connection: is the peer there, and what its data channel delivers.

A session slot belongs to a peer that is there. aioice declares nothing failed while it waits for more
remote candidates (an offer without a=end-of-candidates waits forever) and takes ~30 s of failed consent
checks to notice a vanished peer, so we watch for ourselves: connected within `connect_timeout`, then some
packet (RTCP reports, SCTP, DTLS) from the peer at least every `silence_timeout` seconds. A receiving
browser or aiortc peer sends RTCP receiver reports about every second.
"""
from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass

from aiortc import RTCPeerConnection
from aiortc.rtcsctptransport import WEBRTC_BINARY, WEBRTC_STRING

log = logging.getLogger(__name__)

POLL = 0.25   # seconds between looks at the connection


async def received_packets(pc: RTCPeerConnection) -> int:
    """Packets received so far on the connection's transports (DTLS, SRTP and SRTCP)."""
    report = await pc.getStats()
    return sum(stats.packetsReceived for stats in report.values() if stats.type == "transport")


async def watch_peer(pc: RTCPeerConnection, connect_timeout: float, silence_timeout: float) -> str:
    """Wait until the peer should lose its slot; returns why, in words."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + connect_timeout
    while pc.connectionState != "connected":
        if pc.connectionState in ("failed", "closed"):
            return f"connection {pc.connectionState}"
        if loop.time() >= deadline:
            return f"not connected within {connect_timeout:g} s ({pc.connectionState})"
        await asyncio.sleep(POLL)
    count, heard = await received_packets(pc), loop.time()
    while True:
        await asyncio.sleep(POLL)
        if pc.connectionState != "connected":
            return f"connection {pc.connectionState}"
        now, latest = loop.time(), await received_packets(pc)
        if latest != count:
            count, heard = latest, now
        elif now - heard >= silence_timeout:
            return f"peer silent for {silence_timeout:g} s"


@dataclass(frozen=True)
class Refused:
    """Delivered to the data channel instead of a message the transport guard refused; says why."""

    reason: str


def guard_channel_messages(pc: RTCPeerConnection, max_bytes: int) -> None:
    """Check each data-channel message before aiortc decodes it (call after setRemoteDescription).

    aiortc 1.16 decodes a string message (PPID 51) with `bytes.decode("utf8")` inside the SCTP receive
    path: invalid UTF-8 raises there and takes the whole connection down. It also delivers messages of any
    size, far above the 256 KiB it advertises. Here a message too large or not UTF-8 reaches the channel
    as `Refused`, and anything else aiortc raises on a message drops that message only.
    """
    sctp = pc.sctp
    receive = getattr(sctp, "_receive", None)
    channels = getattr(sctp, "_data_channels", None)
    if sctp is None or receive is None or channels is None:
        if sctp is not None:
            log.warning("this aiortc has no RTCSctpTransport._receive: data-channel messages are unguarded")
        return

    async def guarded(stream_id: int, pp_id: int, data: bytes) -> None:
        reason = None
        if pp_id in (WEBRTC_STRING, WEBRTC_BINARY) and len(data) > max_bytes:
            reason = f"The message is too large ({len(data)} bytes; at most {max_bytes})."
        elif pp_id == WEBRTC_STRING:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                reason = "Messages must be UTF-8 text."
        channel = channels.get(stream_id)
        if reason is not None:
            if channel is not None:
                channel.emit("message", Refused(reason))
            return
        try:
            await receive(stream_id, pp_id, data)
        except Exception as error:  # e.g. a channel-open request with a label that is not UTF-8
            log.warning("dropped a data-channel message aiortc could not take: %r", error)

    sctp._receive = guarded


def advertise_max_message_size(answer_sdp: str, max_bytes: int) -> str:
    """The answer with our data-channel limit as its a=max-message-size (aiortc always writes 256 KiB), so a
    well-behaved peer refuses to send bigger messages itself."""
    return re.sub(r"^a=max-message-size:\d+", f"a=max-message-size:{max_bytes}", answer_sdp, flags=re.M)
