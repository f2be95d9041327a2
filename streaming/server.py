"""`avatar serve`: run the app with uvicorn."""
from __future__ import annotations

import uvicorn

from streaming.app import create_app
from streaming.settings import ServiceSettings


def serve(settings: ServiceSettings) -> None:
    """Serve the avatar on settings.host:settings.port until interrupted."""
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")


if __name__ == "__main__":  # python -m streaming.server: settings from AVATAR_* variables
    serve(ServiceSettings())
