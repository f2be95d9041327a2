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
