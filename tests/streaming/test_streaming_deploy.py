"""What a deployment of several instances relies on: readiness apart from liveness, metrics in Prometheus'
text format, session ids that say which instance made them, and the ICE servers handed to pages."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import threading
import time

import httpx
import pytest

import streaming.app
from harness.metrics import by_label, metric_values, value
from harness.probe import AvatarProbe
from streaming.app import create_app
from streaming.ice_servers import IceConfig, IceServer
from streaming.settings import ServiceSettings
from streaming_support import ToneEngine, ToneResponder, free_port, loopback_settings, serve_in_thread


# --- readiness ---------------------------------------------------------------------------------------------


def test_ready_is_503_while_loading_and_when_full(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def slow_bot(settings):      # the bot's loading (its first training can take minutes) held until released
        release.wait(60)
        return ToneResponder()

    monkeypatch.setattr(streaming.app, "build_responder", slow_bot)
    app = create_app(loopback_settings(max_sessions=1), engine=ToneEngine())
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(serve_in_thread(app, free_port(), ready=False))
        stack.callback(release.set)               # first thing on the way out: let the loading thread end
        health, ready = httpx.get(f"{url}/health"), httpx.get(f"{url}/ready")
        assert health.status_code == 200 and health.json()["status"] == "starting", health.text
        assert ready.status_code == 503 and "loading" in ready.json()["detail"], ready.text
        assert int(ready.headers["retry-after"]) > 0
        offer = httpx.post(f"{url}/offer", json={"sdp": "v=0", "type": "offer"})
        assert offer.status_code == 503 and "loading" in offer.json()["detail"], offer.text
        assert httpx.get(f"{url}/metrics").status_code == 200      # the process's own figures from the start

        release.set()
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/ready").status_code != 200:
            assert time.monotonic() < deadline, "never ready after loading"
            time.sleep(0.05)
        assert httpx.get(f"{url}/health").json()["status"] == "ok"

        async def one_session() -> tuple[int, dict]:
            probe = AvatarProbe(url)
            try:
                await probe.start(timeout=30)
                async with httpx.AsyncClient(base_url=url) as http:
                    full = await http.get("/ready")
                return full.status_code, full.json()
            finally:
                await probe.close()

        status, body = asyncio.run(one_session())
        assert status == 503 and "full" in body["detail"] and body["sessions"] == 1, body


def test_a_failed_load_turns_health_and_ready_503(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_bot(settings):
        raise ValueError("corpus file faq.yml, line 3: not a conversation")

    monkeypatch.setattr(streaming.app, "build_responder", broken_bot)
    app = create_app(loopback_settings(), engine=ToneEngine())
    stopped = threading.Event()
    app.state.startup.on_failure = stopped.set                   # `avatar serve` stops the server here
    with serve_in_thread(app, free_port(), ready=False) as url:
        assert stopped.wait(30)
        health, ready = httpx.get(f"{url}/health"), httpx.get(f"{url}/ready")
        assert health.status_code == 503 and health.json()["status"] == "failed", health.text
        assert "faq.yml, line 3" in health.json()["detail"]
        assert ready.status_code == 503 and "faq.yml, line 3" in ready.json()["detail"]


# --- metrics -----------------------------------------------------------------------------------------------


async def test_metrics_move_when_a_session_connects_and_chats() -> None:
    app = create_app(loopback_settings(max_sessions=2), engine=ToneEngine(), responder=ToneResponder())
    with serve_in_thread(app, free_port()) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            page = await http.get("/metrics")
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/plain")
            before = metric_values(page.text)
            assert value(before, "avatar_sessions_live") == 0
            assert value(before, "process_resident_memory_bytes") > 0
            assert value(before, "process_cpu_seconds_total") > 0
            assert (await http.post("/offer", json={"sdp": "v=0\r\n", "type": "offer"})).status_code == 400

            probe = AvatarProbe(url)
            try:
                await probe.start(timeout=30, settle=2.5)
                sent = probe.say("hello")
                await probe.next_event("speaking", timeout=30)
                await asyncio.sleep(0.5)
                assert probe.received.first_loud_audio(sent) is not None
                assert (await http.post("/chat", json={"text": ""})).status_code == 422
                during = metric_values((await http.get("/metrics")).text)
            finally:
                await probe.close()

        session = probe.session_id
        assert value(during, "avatar_sessions_live") == 1
        assert value(during, "avatar_offers_total", outcome="answered") == 1
        assert value(during, "avatar_offers_total", outcome="bad_offer") == 1
        assert 15 <= value(during, "avatar_session_fps", session=session) <= 30
        assert value(during, "avatar_session_frames_total", session=session) >= 50
        assert value(during, "avatar_chat_messages_total", outcome="answer") == 1
        assert value(during, "avatar_chat_messages_total", outcome="refused") == 1
        assert value(during, "avatar_reply_seconds_count") == 1
        assert value(during, "avatar_first_audio_seconds_count") == 1
        assert 0 < value(during, "avatar_first_audio_seconds_sum") < 5
        shared = value(during, "avatar_session_frames_shared_total", session=session)
        assert value(during, "avatar_frame_seconds_count", stage="render") + shared >= 50  # here, or shared once
        assert value(during, "avatar_frame_seconds_count", stage="encode_video") >= 10     # before the idle stream
        assert shared > 0 and value(during, "avatar_frame_seconds_count", stage="encode_shared") > 0
        assert value(during, "avatar_frame_seconds_count", stage="encode_audio") >= 40     # the reply, 10 or 20 ms each
        assert 0 < value(during, "avatar_frame_seconds_sum", stage="encode_video") < 5     # CPU seconds
        pools = by_label(during, "avatar_thread_cpu_seconds_total", "pool")
        assert pools.get("media-loop", 0) > 0 and pools.get("render", 0) > 0, pools  # the loop; renders and encodes


# --- several instances -------------------------------------------------------------------------------------


async def test_a_session_of_another_instance_is_409_and_ids_name_their_instance() -> None:
    app = create_app(loopback_settings(instance_id="east-1"), engine=ToneEngine(), responder=ToneResponder())
    with serve_in_thread(app, free_port()) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            assert (await http.get("/ready")).json()["instance"] == "east-1"
            foreign = await http.post("/chat", json={"text": "hello", "session_id": "west-2-0123abcd"})
            assert foreign.status_code == 409 and "west-2" in foreign.json()["detail"], foreign.text
            assert (await http.delete("/session/west-2-0123abcd")).status_code == 409
            unknown = await http.post("/chat", json={"text": "hello", "session_id": "east-1-0123abcd"})
            assert unknown.status_code == 404 and "unknown session" in unknown.json()["detail"]
            probe = AvatarProbe(url)
            try:
                await probe.connect(timeout=30)
                assert probe.session_id.startswith("east-1-")
                mine = await http.post("/chat", json={"text": "hello", "session_id": probe.session_id})
                assert mine.status_code == 200, mine.text
            finally:
                await probe.close()


# --- ICE servers ---------------------------------------------------------------------------------------------


def test_turn_credentials_follow_coturns_shared_secret_scheme() -> None:
    config = IceConfig([IceServer(urls="stun:turn.example.org"),
                        IceServer(urls=["turn:turn.example.org:3478?transport=udp"])],
                       "relay", turn_secret="s3cret", credential_ttl=600, clock=lambda: 1_800_000_000)
    page = config.for_page()
    assert page["iceTransportPolicy"] == "relay" and page["credentialsExpire"] == 1_800_000_600
    stun, turn = page["iceServers"]
    assert stun == {"urls": ["stun:turn.example.org"]}                   # STUN needs no credentials
    expiry, _, user = turn["username"].partition(":")
    assert int(expiry) == 1_800_000_600 and user
    expected = base64.b64encode(hmac.new(b"s3cret", turn["username"].encode(), hashlib.sha1).digest()).decode()
    assert turn["credential"] == expected
    assert config.for_page()["iceServers"][1]["username"] != turn["username"]    # fresh for every page
    peer = config.for_peer()
    assert peer.iceTransportPolicy.value == "relay" and peer.iceServers[1].username.startswith("1800000600:")


def test_ice_settings_are_checked_before_the_service_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVATAR_ICE_SERVERS", '[{"urls": "turn:turn.example.org", "username": "u", "credential": "p"}]')
    monkeypatch.setenv("AVATAR_ICE_TRANSPORT_POLICY", "relay")
    settings = ServiceSettings()
    assert settings.ice_servers[0].urls == ("turn:turn.example.org",) and settings.ice_transport_policy == "relay"
    with pytest.raises(ValueError, match="needs a username and credential"):
        create_app(loopback_settings(ice_servers=[{"urls": "turn:turn.example.org"}]))
    with pytest.raises(ValueError, match="'relay' needs a TURN server"):
        create_app(loopback_settings(ice_servers=[{"urls": "stun:stun.example.org"}], ice_transport_policy="relay"))
    with pytest.raises(ValueError, match="not a STUN or TURN URL"):
        loopback_settings(ice_servers=[{"urls": "https://turn.example.org"}])


def test_ice_route_gives_the_page_its_configuration() -> None:
    from fastapi.testclient import TestClient

    settings = loopback_settings(ice_servers=[{"urls": "stun:stun.example.org:3478"},
                                              {"urls": "turn:turn.example.org:3478", "username": "kiosk",
                                               "credential": "long-lived"}])
    with TestClient(create_app(settings, engine=ToneEngine(), responder=ToneResponder()),
                    base_url="http://127.0.0.1") as client:
        config = client.get("/ice").json()
    assert config == {"iceServers": [{"urls": ["stun:stun.example.org:3478"]},
                                     {"urls": ["turn:turn.example.org:3478"], "username": "kiosk",
                                      "credential": "long-lived"}],
                      "iceTransportPolicy": "all", "credentialsExpire": None}


async def test_relay_only_with_the_turn_server_down_is_503_not_a_dead_answer() -> None:
    settings = loopback_settings(ice_servers=[{"urls": "turn:127.0.0.1:9?transport=udp", "username": "u",
                                               "credential": "p"}], ice_transport_policy="relay")
    with serve_in_thread(create_app(settings, engine=ToneEngine(), responder=ToneResponder()), free_port()) as url:
        probe = AvatarProbe(url)
        try:
            with pytest.raises(httpx.HTTPStatusError) as refused:
                await probe.connect(timeout=60)
        finally:
            await probe.close()
        assert refused.value.response.status_code == 503
        assert "TURN relay cannot be reached" in refused.value.response.json()["detail"]
        async with httpx.AsyncClient(base_url=url) as http:
            assert (await http.get("/health")).json()["sessions"] == 0
