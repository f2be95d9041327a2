"""Refuse requests whose Host header names a host this service does not serve: a DNS-rebinding defence.

A page on any site can have its own name re-resolved to 127.0.0.1 and then call a service bound to loopback;
the browser still sends the page's name as Host, so only names on the allow-list get through. A Host that is an
IP address is always let through: it means the page itself came from that address, which rebinding cannot fake
(and a service bound to 0.0.0.0 stays reachable by address). Starlette's TrustedHostMiddleware answers in plain
text and cuts "[::1]:8000" at its first colon, hence this one.
"""
from __future__ import annotations

import json
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from streaming.ice import ANY_ADDRESS, is_address

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def host_name(host: str) -> str:
    """The name in a Host header, without port, brackets or trailing dot, in lower case: "[::1]:80" -> "::1"."""
    host = host.strip().lower()
    if host.startswith("["):                          # [v6 address] with or without a port
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:                        # name:port (a bare v6 address has more colons)
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def allowed_hosts(configured: str, bind_host: str) -> tuple[str, ...]:
    """The allow-list: `configured` (comma separated; "*" lets any host in), else loopback names and the bind host."""
    names = tuple(name.strip() for name in configured.split(",") if name.strip())
    if names:
        return names
    return LOOPBACK_NAMES + (() if bind_host in ANY_ADDRESS else (bind_host,))


class HostCheckMiddleware:
    """ASGI middleware: HTTP requests naming a host off the list get 400 JSON; WebSocket ones are closed (1008)."""

    def __init__(self, app: ASGIApp, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(host_name(name) for name in allowed)
        self.any_host = "*" in self.allowed

    def allows(self, host: str | None) -> bool:
        if self.any_host:
            return True
        if not host:
            return False
        name = host_name(host)
        return name in self.allowed or is_address(name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.any_host:
            await self.app(scope, receive, send)
            return
        host = next((value.decode("latin-1") for key, value in scope["headers"] if key == b"host"), None)
        if self.allows(host):
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "unknown host"})
        else:
            detail = (f"unknown host {host[:100]!r}: this service answers to {', '.join(sorted(self.allowed))} "
                      "and IP addresses (AVATAR_ALLOWED_HOSTS sets the names)") if host else "the request has no Host header"
            payload = json.dumps({"detail": detail}).encode()
            await send({"type": "http.response.start", "status": 400,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(payload)).encode())]})
            await send({"type": "http.response.body", "body": payload})
