"""The FastAPI app: pages, static files and the JSON routes, with the shared models loaded at startup."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
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
from streaming.services import Services, build_engine, build_responder
from streaming.settings import ServiceSettings

STATIC_DIR = Path(__file__).parent / "static"


def create_app(settings: ServiceSettings | None = None, engine: Engine | None = None,
               responder: Responder | None = None) -> FastAPI:
    """The service; `engine` and `responder` are built in the lifespan unless passed in (tests pass them)."""
    settings = settings or ServiceSettings()
    ice = ice_addresses(settings.host, settings.ice_addresses, settings.ice_loopback_only)   # bad ones fail here

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with gather_only(ice):
            services = Services.create(
                settings,
                engine=engine or await asyncio.to_thread(build_engine, settings),
                responder=responder or await asyncio.to_thread(build_responder, settings),
            )
            app.state.services = services
            try:
                yield
            finally:
                await services.close()

    app = FastAPI(title="Conversational avatar", lifespan=lifespan)
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
