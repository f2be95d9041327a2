"""Escalations through the service with the real bot: an urgent message gets the emergency reply, an `urgent`
event on the data channel and a webhook POST (to a local test server); a request for a person gets `handover`;
a webhook that never answers does not hold up the reply."""
from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from streaming.app import create_app
from harness.probe import AvatarProbe
from streaming_support import ToneEngine, free_port, loopback_settings, serve_in_thread

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

URGENT = "My husband collapsed and is not waking up"


@pytest.fixture(scope="module")
def bot(tmp_path_factory):
    from bot.responder import BotSettings, ChatResponder

    db = tmp_path_factory.mktemp("bot") / "bot.sqlite3"
    responder = ChatResponder.create(BotSettings(database_url=f"sqlite:///{db}", show_progress=False))
    yield responder
    responder.close()


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict], threading.Event]]:
    """A local webhook that records each POSTed JSON body."""
    received: list[dict] = []
    arrived = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(204)
            self.end_headers()
            arrived.set()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/alert", received, arrived
    finally:
        server.shutdown()
        server.server_close()


async def test_urgent_message_gets_the_emergency_reply_an_event_and_a_webhook_post(bot, webhook) -> None:
    url_hook, received, arrived = webhook
    app = create_app(loopback_settings(alert_webhook=url_hook), engine=ToneEngine(), responder=bot)
    with serve_in_thread(app, free_port()) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            reply = (await http.post("/chat", json={"text": URGENT})).json()
        assert reply["kind"] == "urgent" and "1 1 2" in reply["reply"], reply
        assert arrived.wait(10), "the webhook was not called"
        assert received[0]["kind"] == "urgent" and received[0]["message"] == URGENT
        assert received[0]["conversation_id"] == reply["conversation_id"] and received[0]["reply"] == reply["reply"]

        probe = AvatarProbe(url)
        try:
            await probe.connect(timeout=60)
            probe.say("I want to talk to a human")
            event = await probe.next_event("handover", timeout=30)
            assert event["text"]
            arrived.clear()
            assert arrived.wait(10)
            assert received[-1]["kind"] == "handover" and received[-1]["session_id"] == probe.session_id
        finally:
            await probe.close()


async def test_a_dead_webhook_does_not_hold_up_the_reply(bot) -> None:
    dead = socket.socket()                     # accepts connections (backlog) but never answers
    dead.bind(("127.0.0.1", 0))
    dead.listen(8)
    try:
        app = create_app(loopback_settings(alert_webhook=f"http://127.0.0.1:{dead.getsockname()[1]}/alert"),
                         engine=ToneEngine(), responder=bot)
        with serve_in_thread(app, free_port()) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                reply = (await http.post("/chat", json={"text": URGENT})).json()
            assert reply["kind"] == "urgent"
            # the reply came back while the webhook's POST was still waiting for an answer
            assert app.state.services.alerts.pending == 1
    finally:
        dead.close()
