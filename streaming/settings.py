"""Typed settings of the live service, read from AVATAR_* environment variables or passed in."""
from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from avatar.pipeline import AvatarSettings


class ServiceSettings(BaseSettings):
    """Everything `avatar serve` can be told: where to listen, which avatar and voice, and the limits."""

    model_config = SettingsConfigDict(env_prefix="AVATAR_", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    # "default", an avatar bundle (folder or .avatar file) or a driving-clip .npz
    avatar: str = AvatarSettings.avatar
    voice: str = AvatarSettings.voice              # espeak-ng voice name (the voice checks it)
    rate: int = AvatarSettings.rate                # words per minute (the voice checks the range)
    database_url: str | None = None                # the bot's database URL (None: the bot's default SQLite file)
    max_message_chars: int = Field(1000, ge=1)     # longer chat messages are refused
    max_body_bytes: int = Field(64 * 1024, ge=1024)  # larger request bodies get 413 before parsing
    max_sessions: int = Field(8, ge=1)             # live WebRTC sessions; one more gets 503
    ice_loopback_only: bool = False                # tests only: offer 127.0.0.1 as the only ICE host candidate

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
