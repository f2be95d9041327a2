"""What the routes share: the avatar engine, the bot, the live sessions and the render workers.

Built once per app in its lifespan (the engine and the bot take seconds to load), or passed in by tests.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request

from avatar.types import Responder
from streaming.guarded import Engine
from streaming.session import SessionRegistry
from streaming.settings import ServiceSettings
from streaming.tracks import EncoderFrames


@dataclass
class Services:
    settings: ServiceSettings
    engine: Engine
    responder: Responder
    sessions: SessionRegistry
    render_pool: ThreadPoolExecutor       # rendering and frame conversion, shared by all sessions
    frames: EncoderFrames                 # converted frames per driving frame, shared by all sessions


def build_engine(settings: ServiceSettings) -> Engine:
    """The real avatar engine for `settings` (loads the driving clip and the voice)."""
    from avatar.pipeline import AvatarEngine, AvatarSettings

    return AvatarEngine.from_settings(AvatarSettings(avatar=settings.avatar, voice=settings.voice,
                                                     rate=settings.rate))


def build_responder(settings: ServiceSettings) -> Responder:
    """The real chatbot (trains its corpus on first use, then reads its database)."""
    from bot.responder import BotSettings, ChatResponder

    bot = BotSettings(max_message_chars=settings.max_message_chars)
    url = settings.database_url
    if url is not None:
        if "://" not in url:  # a plain path names an SQLite file
            url = f"sqlite:///{Path(url).expanduser().resolve()}"
        bot = BotSettings(database_url=url, max_message_chars=settings.max_message_chars)
    return ChatResponder.create(bot)


def get_services(request: Request) -> Services:
    """FastAPI dependency: this app's services."""
    return request.app.state.services
