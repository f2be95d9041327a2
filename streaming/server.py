"""`avatar serve`: run the app with uvicorn, its connections bounded in number and time, its error logs in rate."""
from __future__ import annotations

import dataclasses

import uvicorn
from starlette.types import ASGIApp

from streaming.app import create_app
from streaming.connections import HttpLimits, guarded_http, raise_fd_limit, within_fd_limit
from streaming.logs import configure_logging, install_rate_limit
from streaming.settings import ServiceSettings


def http_limits(settings: ServiceSettings, fd_limit: int) -> HttpLimits:
    """The HTTP limits from settings (fields http_max_connections, http_idle_timeout, ...; AVATAR_HTTP_*),
    fitted to the limit on open files. Fields settings lack keep HttpLimits' defaults."""
    given = {field.name: getattr(settings, f"http_{field.name}") for field in dataclasses.fields(HttpLimits)
             if hasattr(settings, f"http_{field.name}")}
    return within_fd_limit(HttpLimits(**given), fd_limit)


def server_config(app: ASGIApp, host: str, port: int, limits: HttpLimits, log_level: str = "info") -> uvicorn.Config:
    """uvicorn's config for `app`: the guarded h11 protocol, keep-alive as long as the idle timeout, and a
    bounded wait for requests in progress at shutdown."""
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, http=guarded_http(limits),
                          backlog=limits.backlog, timeout_keep_alive=limits.idle_timeout, timeout_graceful_shutdown=10)


def serve(settings: ServiceSettings, app: ASGIApp | None = None) -> None:
    """Serve the avatar (or `app`: tests pass one with stand-in parts) on settings.host:settings.port until
    interrupted."""
    configure_logging()
    limits = http_limits(settings, raise_fd_limit())
    app = app or create_app(settings)
    config = server_config(app, settings.host, settings.port, limits)
    install_rate_limit()                      # after uvicorn.Config has set up logging
    server = uvicorn.Server(config)
    startup = getattr(getattr(app, "state", None), "startup", None)
    if startup is not None:                   # the avatar or the bot failed to load: stop, and say why
        startup.on_failure = lambda: setattr(server, "should_exit", True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    if startup is not None and startup.error is not None:
        raise startup.error


if __name__ == "__main__":  # python -m streaming.server: settings from AVATAR_* variables
    serve(ServiceSettings())
