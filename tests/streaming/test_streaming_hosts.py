"""The Host allow-list (DNS-rebinding defence) in front of the app with stand-in parts."""
from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient

from streaming.app import create_app
from streaming.hosts import HostCheckMiddleware, allowed_hosts, host_name
from streaming_support import ToneEngine, ToneResponder, loopback_settings

pytestmark = pytest.mark.timeout(60)


def client_for(configured: str = "", bind_host: str = "127.0.0.1") -> TestClient:
    """The app as create_app builds it (its own Host check), told `allowed_hosts` and bound to `bind_host`."""
    settings = loopback_settings(allowed_hosts=configured).model_copy(update={"host": bind_host})
    app = create_app(settings, engine=ToneEngine(), responder=ToneResponder())
    return TestClient(app, base_url="http://localhost")


def status_for(client: TestClient, host: str) -> int:
    return client.get("/health", headers={"host": host}).status_code


def test_foreign_hosts_get_400_json_and_loopback_names_pass() -> None:
    with client_for() as client:
        for host in ("evil.example", "evil.example:8000", "localhost.evil.example", "127.0.0.1.nip.io:8000"):
            response = client.get("/health", headers={"host": host})
            assert response.status_code == 400, (host, response.text)
            assert response.headers["content-type"] == "application/json"
            assert "unknown host" in response.json()["detail"], response.text
        response = client.post("/chat", json={"text": "hi"}, headers={"host": "evil.example"})
        assert response.status_code == 400                              # before any route runs
        for host in ("localhost", "localhost:8000", "LOCALHOST.:8000", "127.0.0.1:1234", "[::1]:8000",
                     "192.0.2.7:8000", "[2001:db8::1]"):                 # addresses cannot be rebound names
            assert status_for(client, host) == 200, host
        assert client.post("/chat", json={"text": "hi"}).json()["reply"] == "You said: hi"


def test_configured_hosts_replace_the_default_and_star_allows_any() -> None:
    with client_for("avatar.example, kiosk.lan:8000") as client:
        assert status_for(client, "avatar.example:8000") == 200
        assert status_for(client, "kiosk.lan") == 200
        assert status_for(client, "localhost:8000") == 400
    with client_for("*") as client:
        assert status_for(client, "anything.example") == 200
    with client_for(bind_host="avatar-box.lan") as client:              # the bind host is served by default
        assert status_for(client, "avatar-box.lan:8000") == 200
        assert status_for(client, "other-box.lan:8000") == 400


def test_allow_list_parts() -> None:
    assert host_name("[::1]:8000") == "::1" and host_name("LocalHost.:80") == "localhost"
    assert host_name("::1") == "::1" and host_name("example.org") == "example.org"
    assert allowed_hosts("", "0.0.0.0") == ("localhost", "127.0.0.1", "::1")
    assert allowed_hosts("", "10.1.2.3")[-1] == "10.1.2.3"
    assert not HostCheckMiddleware(None, allowed=("localhost",)).allows(None)   # no Host header at all


def test_websocket_with_a_foreign_host_is_closed_before_the_app() -> None:
    called = []

    async def app(scope, receive, send) -> None:
        called.append(scope["type"])

    sent = []

    async def send(message) -> None:
        sent.append(message)

    async def receive():
        return {"type": "websocket.connect"}

    middleware = HostCheckMiddleware(app, allowed=allowed_hosts("", "127.0.0.1"))
    scope = {"type": "websocket", "path": "/ws", "headers": [(b"host", b"evil.example")]}
    asyncio.run(middleware(scope, receive, send))
    assert called == [] and sent == [{"type": "websocket.close", "code": 1008, "reason": "unknown host"}]
    asyncio.run(middleware(dict(scope, headers=[(b"host", b"localhost:8000")]), receive, send))
    assert called == ["websocket"]
