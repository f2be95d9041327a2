"""Checks an SDP offer for what aiortc needs to complete a session, before building a peer connection for it.

aiortc accepts some offers it can never complete (no DTLS fingerprint: ICE connects, DTLS never starts) and
raises deep inside createAnswer for others (a BUNDLE group naming a missing mid). Whatever passes here is
still handed to aiortc inside a try: anything it raises is a bad offer too (400), never a server error.
"""
from __future__ import annotations

import re

from aiortc.sdp import SessionDescription

from streaming.codecs import SENT_CODECS

PROFILES = {"audio": {"UDP/TLS/RTP/SAVPF"}, "video": {"UDP/TLS/RTP/SAVPF"},
            "application": {"UDP/DTLS/SCTP", "DTLS/SCTP"}}
DIGEST_BYTES = {"sha-256": 32, "sha-384": 48, "sha-512": 64}   # the fingerprints aiortc can verify
ICE_CHARS = re.compile(r"[A-Za-z0-9+/]+")                       # RFC 8839 ice-char
SDP_LINE = re.compile(r"[a-z]=[^\x00-\x08\x0a-\x1f\x7f]*")      # type=value, no control characters
FINGERPRINT = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2})*")


class BadOffer(ValueError):
    """An offer this service cannot complete; the message says why in plain words."""


def check_offer(sdp: str) -> set[str]:
    """The media kinds `sdp` offers (audio, video, application); BadOffer unless aiortc can answer and connect it."""
    lines = [line for line in sdp.strip().replace("\r\n", "\n").split("\n")]
    if not lines or lines[0].strip() != "v=0":
        raise BadOffer("it must start with 'v=0'")
    for number, line in enumerate(lines, 1):
        if not SDP_LINE.fullmatch(line.rstrip("\r")):
            raise BadOffer(f"line {number} is not an SDP line (type=value)")
    if not any(line.startswith("m=") for line in lines):
        raise BadOffer("it has no media section (m= line)")
    try:
        description = SessionDescription.parse(sdp)
    except Exception as error:  # aiortc's parser asserts, splits and int()s its way through
        raise BadOffer(f"it could not be parsed ({type(error).__name__})") from None

    kinds = [media.kind for media in description.media]
    if not {"audio", "video"} & set(kinds):
        raise BadOffer("it offers neither audio nor video")
    mids = [media.rtp.muxId for media in description.media]
    if any(not mid for mid in mids):
        raise BadOffer("a media section has no a=mid")
    if len(set(mids)) != len(mids):
        raise BadOffer("two media sections share one a=mid")
    for group in description.group:
        missing = [mid for mid in group.items if mid not in mids]
        if missing:
            raise BadOffer(f"a=group:{group.semantic} names mids with no media section: {', '.join(map(str, missing))}")
    for media in description.media:
        check_media(media)
    return set(kinds)


def check_media(media) -> None:
    """One m= section (aiortc's MediaDescription): transport, ICE, DTLS and something we can send."""
    where = f"m={media.kind} (mid {media.rtp.muxId})"
    if media.kind not in PROFILES:
        raise BadOffer(f"{where}: unknown media kind")
    if media.profile not in PROFILES[media.kind]:
        raise BadOffer(f"{where}: unsupported transport {media.profile!r}")
    ufrag, pwd = media.ice.usernameFragment, media.ice.password
    if not ufrag or not pwd:
        raise BadOffer(f"{where}: no ICE credentials (a=ice-ufrag and a=ice-pwd)")
    if not (4 <= len(ufrag) <= 256 and ICE_CHARS.fullmatch(ufrag)):
        raise BadOffer(f"{where}: a=ice-ufrag must be 4 to 256 letters, digits, '+' or '/'")
    if not (22 <= len(pwd) <= 256 and ICE_CHARS.fullmatch(pwd)):
        raise BadOffer(f"{where}: a=ice-pwd must be 22 to 256 letters, digits, '+' or '/'")
    if media.dtls is None:
        raise BadOffer(f"{where}: no DTLS role (a=setup)")
    if not media.dtls.fingerprints:
        raise BadOffer(f"{where}: no DTLS fingerprint (a=fingerprint)")
    for fingerprint in media.dtls.fingerprints:
        size = DIGEST_BYTES.get(fingerprint.algorithm.lower())
        if size is None:
            raise BadOffer(f"{where}: unsupported fingerprint algorithm {fingerprint.algorithm[:20]!r} "
                           f"(use {', '.join(DIGEST_BYTES)})")
        if not FINGERPRINT.fullmatch(fingerprint.value) or len(fingerprint.value) != 3 * size - 1:
            raise BadOffer(f"{where}: malformed {fingerprint.algorithm} fingerprint")
    if media.kind == "application":
        if media.sctp_port is None:
            raise BadOffer(f"{where}: no a=sctp-port")
        return
    if not media.rtcp_mux:
        raise BadOffer(f"{where}: no a=rtcp-mux")
    ours = SENT_CODECS[media.kind]
    if not any(codec.mimeType.lower() == ours for codec in media.rtp.codecs):
        raise BadOffer(f"{where}: no codec in common (we send {ours})")
