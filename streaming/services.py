"""What the routes share: the avatar engine, the bot, the live sessions, their event loop and the workers.

Built once per app in its lifespan (the engine and the bot take seconds to load), or passed in by tests.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from fastapi import HTTPException, Request

from avatar.types import Responder
from streaming.clients import ClientLimits, Conversations
from streaming.guarded import Engine
from streaming.ice_servers import IceConfig
from streaming.metrics import ServiceMetrics
from streaming.session import SessionRegistry
from streaming.settings import ServiceSettings
from streaming.shared_idle import SharedIdle
from streaming.tracks import EncoderFrames
from streaming.alerts import Alerts
from streaming.workers import MediaLoop, Workers


@dataclass
class Services:
    settings: ServiceSettings
    engine: Engine
    responder: Responder
    sessions: SessionRegistry
    render_pool: ThreadPoolExecutor       # rendering, frame conversion and VP8 encodes, shared by all sessions
    frames: EncoderFrames                 # converted frames per driving frame, shared by all sessions
    shared_idle: SharedIdle | None        # the idle stream, encoded once for every listening session
    media: MediaLoop                      # the event loop the peer connections and sessions live on
    workers: Workers                      # bot replies and speech planning, off the media's executors
    limits: ClientLimits                  # offers and chats per client address
    conversations: Conversations          # /chat conversations of clients without a session
    alerts: Alerts                        # urgent messages and requests for a person: logged, webhook POSTed
    ice: IceConfig                        # STUN/TURN servers for the peer connections and the pages
    metrics: ServiceMetrics               # what GET /metrics reports

    @classmethod
    def create(cls, settings: ServiceSettings, engine: Engine, responder: Responder,
               metrics: ServiceMetrics | None = None, ice: IceConfig | None = None) -> Services:
        workers = Workers.create(settings.bot_workers, settings.speech_workers, settings.max_pending)
        end_session = getattr(responder, "end_session", None)  # the bot may forget a conversation
        forget = None if end_session is None else (lambda conversation: workers.bot.post(end_session, conversation))
        metrics = metrics or ServiceMetrics()
        sessions = SessionRegistry(settings.max_sessions, settings.connect_timeout, settings.peer_silence_timeout,
                                   settings.max_late_share, settings.instance_id)
        metrics.sessions = sessions.figures
        frames = EncoderFrames()
        shared_idle = None
        if settings.shared_idle:
            shared_idle = SharedIdle(engine.performer(seed=0), frames,
                                     on_encode=metrics.frame_seconds.labels("encode_shared").observe)
        return cls(
            settings=settings,
            engine=engine,
            responder=responder,
            sessions=sessions,
            render_pool=ThreadPoolExecutor(max_workers=4, thread_name_prefix="render"),
            frames=frames,
            shared_idle=shared_idle,
            media=MediaLoop(),
            workers=workers,
            limits=ClientLimits(settings.offers_per_minute, settings.chats_per_minute, settings.max_tracked_clients,
                                enabled=settings.client_limits),
            conversations=Conversations(settings.max_conversations, forget),
            alerts=Alerts(settings.alert_webhook),
            ice=ice or ice_config(settings),
            metrics=metrics,
        )

    async def close(self) -> None:
        await self.media.run(self.sessions.close_all())
        await self.media.close()
        self.render_pool.shutdown(wait=False, cancel_futures=True)
        self.workers.shutdown()
        self.alerts.close()


def build_engine(settings: ServiceSettings) -> Engine:
    """The real avatar engine for `settings` (loads the driving clip and the voice)."""
    from avatar.pipeline import AvatarEngine, AvatarSettings

    return AvatarEngine.from_settings(AvatarSettings(avatar=settings.avatar, voice=settings.voice,
                                                     rate=settings.rate))


def build_responder(settings: ServiceSettings) -> Responder:
    """The real chatbot (trains its corpus on first use, then reads its database)."""
    from bot.responder import BotSettings, ChatResponder

    # The deployment's corpus comes from AVATAR_CORPUS, which BotSettings reads itself (`avatar serve --corpus`).
    options = {"max_message_chars": settings.max_message_chars, "emergency_number": settings.emergency_number}
    if settings.database_url is not None:          # a URL or an SQLite file's path (BotSettings takes both)
        options["database_url"] = settings.database_url
    return ChatResponder.create(BotSettings(**options))


def ice_config(settings: ServiceSettings) -> IceConfig:
    """The ICE servers and policy of `settings`; ValueError for a configuration that cannot work."""
    return IceConfig(settings.ice_servers, settings.ice_transport_policy, settings.turn_secret,
                     settings.turn_credential_ttl)


STARTING_RETRY_AFTER = 5   # seconds a caller is told to wait while the avatar and the bot load


def get_services(request: Request) -> Services:
    """FastAPI dependency: this app's services; 503 while the avatar and the bot are still loading."""
    services = getattr(request.app.state, "services", None)
    if services is None:
        raise HTTPException(503, request.app.state.startup.describe(),
                            headers={"Retry-After": str(STARTING_RETRY_AFTER)})
    return services
