"""The FastAPI app: pages, static files and the JSON routes, with the shared models loaded at startup.

The avatar and the bot load in the background (seconds; the bot's first training minutes) while the service
already answers: /health says it is alive, /ready and the routes that need them say 503 until they are loaded.
A load that fails is logged, /health turns 503, and `on_failure` (set by `avatar serve`) stops the server.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from avatar.types import Responder
from streaming import api
from streaming.guarded import Engine
from streaming.hosts import HostCheckMiddleware, allowed_hosts
from streaming.ice import gather_only, ice_addresses
from streaming.limits import BodyLimitMiddleware
from streaming.metrics import ServiceMetrics
from streaming.services import Services, build_engine, build_responder, ice_config
from streaming.settings import ServiceSettings

STATIC_DIR = Path(__file__).parent / "static"
log = logging.getLogger(__name__)


class Startup:
    """Where loading the avatar and the bot stands."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.on_failure: Callable[[], None] | None = None

    def describe(self) -> str:
        if self.error is not None:
            return f"the service failed to start: {self.error}"
        return "starting: the avatar and the bot are loading"

    def fail(self, error: BaseException) -> None:
        self.error = error
        if self.on_failure is not None:
            self.on_failure()


def create_app(settings: ServiceSettings | None = None, engine: Engine | None = None,
               responder: Responder | None = None) -> FastAPI:
    """The service; `engine` and `responder` are built in the lifespan unless passed in (tests pass them)."""
    settings = settings or ServiceSettings()
    ice = ice_addresses(settings.host, settings.ice_addresses, settings.ice_loopback_only)   # bad ones fail here
    servers = ice_config(settings)                                                            # and here
    metrics = ServiceMetrics()

    async def load(app: FastAPI) -> None:
        try:
            built_engine, built_responder = await asyncio.gather(
                asyncio.to_thread(build_engine, settings) if engine is None else _ready(engine),
                asyncio.to_thread(build_responder, settings) if responder is None else _ready(responder))
            app.state.services = Services.create(settings, built_engine, built_responder, metrics, servers)
        except Exception as error:
            log.exception("the service could not load the avatar or the bot")
            app.state.startup.fail(error)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with gather_only(ice):
            app.state.services = None
            loading = asyncio.create_task(load(app))
            if engine is not None and responder is not None:
                await loading                       # nothing to wait for: ready before the first request
            try:
                yield
            finally:
                loading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loading
                if app.state.services is not None:
                    await app.state.services.close()

    app = FastAPI(title="Conversational avatar", lifespan=lifespan)
    app.state.startup = Startup()
    app.state.metrics = metrics
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(HostCheckMiddleware, allowed=allowed_hosts(settings.allowed_hosts, settings.host))  # first
    app.include_router(api.router)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/kiosk", include_in_schema=False)
    async def kiosk() -> FileResponse:
        return FileResponse(STATIC_DIR / "kiosk.html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


async def _ready(value):
    return value
