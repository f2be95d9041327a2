"""Typed settings of the live service, read from AVATAR_* environment variables or passed in."""
from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from avatar.pipeline import AvatarSettings
from streaming.ice_servers import IceServer


class ServiceSettings(BaseSettings):
    """Everything `avatar serve` can be told: where to listen, which avatar and voice, and the limits."""

    model_config = SettingsConfigDict(env_prefix="AVATAR_", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    # "default", an avatar bundle (folder or .avatar file) or a driving-clip .npz
    avatar: str = AvatarSettings.avatar
    voice: str = AvatarSettings.voice              # espeak-ng voice name (the voice checks it)
    rate: int = AvatarSettings.rate                # words per minute (the voice checks the range)
    database_url: str | None = None   # the bot's database: a URL or an SQLite file's path (None: var/bot.sqlite3)
    max_message_chars: int = Field(1000, ge=1)     # longer chat messages are refused
    max_body_bytes: int = Field(64 * 1024, ge=1024)  # larger request bodies get 413 before parsing
    max_sessions: int = Field(8, ge=1)             # live WebRTC sessions; one more gets 503
    # ... and so does one more while this share of the live sessions' frames (last 3 s) left late: CPU spent
    max_late_share: float = Field(0.05, ge=0.0, le=1.0)
    ice_loopback_only: bool = False                # tests only: offer 127.0.0.1 as the only ICE host candidate
    shared_idle: bool = True                       # listening sessions send one idle stream, encoded once

    # A slot belongs to a peer that is there.
    connect_timeout: float = Field(15.0, gt=0)       # seconds from the answer to ICE+DTLS connected, else closed
    peer_silence_timeout: float = Field(5.0, gt=0)   # seconds without a packet from a connected peer, else closed
    max_channel_message_bytes: int = Field(256 * 1024, ge=1024)  # data-channel messages (aiortc advertises 256 KiB)

    # Per client address (429 beyond these); off in most tests, which all come from 127.0.0.1.
    client_limits: bool = True
    max_sessions_per_client: int = Field(2, ge=1)  # live sessions of one address
    offers_per_minute: int = Field(12, ge=1)       # POST /offer by one address
    chats_per_minute: int = Field(30, ge=1)        # POST /chat and data-channel messages by one address
    max_tracked_clients: int = Field(10_000, ge=1)  # addresses remembered; the least recently seen are forgotten

    # CPU work off the media's executor: bot replies, and speech synthesis with motion planning.
    bot_workers: int = Field(2, ge=1)
    speech_workers: int = Field(2, ge=1)
    max_pending: int = Field(16, ge=0)             # jobs waiting per pool; one more is refused at once
    max_conversations: int = Field(1000, ge=1)     # /chat conversations without a session remembered

    # Who may call, and where WebRTC listens.
    allowed_hosts: str = ""   # Host names served, comma separated ("*": any); "": localhost, 127.0.0.1, ::1, `host`
    ice_addresses: str = ""   # ICE host-candidate addresses, comma separated ("*": all); "": `host` (0.0.0.0: all)

    # Real networks (streaming/ice_servers.py): STUN/TURN servers as the browser's RTCIceServer list in JSON, e.g.
    # [{"urls": "stun:turn.example.org"}, {"urls": ["turn:turn.example.org:3478?transport=udp"]}]
    ice_servers: list[IceServer] = []
    ice_transport_policy: Literal["all", "relay"] = "all"   # relay: TURN relay candidates only, both sides
    turn_secret: str = ""      # coturn's static-auth-secret: time-limited TURN credentials for TURN servers without
    turn_credential_ttl: int = Field(3600, ge=60)   # seconds those credentials stay valid

    # Several instances behind one address (README: sticky routing): the start of every session id made here.
    instance_id: str = Field("", pattern=r"^[A-Za-z0-9_-]{0,32}$")   # "": a random one per start
    # HTTP connections (streaming/connections.py); the cap and backlog are also fitted to the open-files limit.
    http_max_connections: int = Field(1000, ge=16)  # open connections; past it the longest-idle one is closed
    http_idle_timeout: float = Field(5.0, gt=0)     # seconds a connection may wait for its next request
    http_header_timeout: float = Field(10.0, gt=0)  # seconds from a request's first byte to the end of its headers
    http_body_timeout: float = Field(30.0, gt=0)    # seconds from the end of the headers to the end of the body
    http_backlog: int = Field(2048, ge=16)          # listen queue and accept batch (at most 1/16 of the files limit)

    # Escalation: urgent messages and requests for a person (the bot decides; see bot/escalation.py).
    emergency_number: str = "112"   # told to the user in the urgent reply, said digit by digit
    alert_webhook: str = ""         # URL POSTed a JSON alert for each urgent message or hand-over ("": log only)
