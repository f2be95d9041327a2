"""Bad requests get a 4xx with a clear JSON message, and a live session keeps streaming meanwhile."""
from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from harness.probe import AvatarProbe

pytestmark = pytest.mark.timeout(120)


async def test_bad_requests_leave_other_sessions_streaming(fake_server: str) -> None:
    probe = AvatarProbe(fake_server)
    await probe.connect()
    try:
        await probe.wait_for_media()
        async with httpx.AsyncClient(base_url=fake_server, timeout=20) as http:
            checks = [
                (http.post("/offer", json={"sdp": "hello", "type": "offer"}), 400, "malformed SDP"),
                (http.post("/offer", json={"sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nbroken", "type": "offer"}),
                 400, "malformed SDP"),
                (http.post("/offer", json={"sdp": "v=0", "type": "answer"}), 422, "type"),
                (http.post("/offer", content=b"{not json", headers={"content-type": "application/json"}), 422,
                 "JSON"),
                (http.post("/offer", content=b"sdp=v%3D0", headers={"content-type": "application/x-www-form-urlencoded"}),
                 415, "application/json"),
                (http.post("/chat", content=b"hi", headers={"content-type": "text/plain"}), 415, "application/json"),
                (http.post("/offer", json={"sdp": "v=0\r\n" + "a=x\r\n" * 2000, "type": "offer"}), 413, "too large"),
                (http.post("/chat", json={"text": "hello", "session_id": "nope"}), 404, "unknown session"),
                (http.delete("/session/nope"), 404, "unknown session"),
                (http.post("/chat", json={"text": "   "}), 422, "empty"),
                (http.post("/chat", json={"words": "hello"}), 422, "text"),
            ]
            for request, status, words in checks:
                response = await request
                assert response.status_code == status, (status, response.text)
                assert words.lower() in response.json()["detail"].lower(), response.text
            # a chunked upload declares no length: still refused once it passes the limit
            async def chunks():
                for _ in range(10):
                    yield b" " * 1000
            response = await http.post("/chat", content=chunks(), headers={"content-type": "application/json"})
            assert response.status_code == 413
            # the good routes still answer
            assert (await http.post("/chat", json={"text": "still there?"})).json()["reply"] == "You said: still there?"
            health = (await http.get("/health")).json()
            assert health["sessions"] == 1
        await asyncio.sleep(1.5)
        now = time.monotonic()
        assert 20 <= probe.received.video_fps(now - 1.0, now) <= 30
    finally:
        await probe.close()


async def test_sessions_are_bounded_and_freed(fake_server: str) -> None:
    probes = [AvatarProbe(fake_server) for _ in range(3)]               # the fixture allows 3
    try:
        for probe in probes:
            await probe.connect()
        extra = AvatarProbe(fake_server)
        with pytest.raises(httpx.HTTPStatusError) as refused:
            await extra.connect()
        await extra.close()
        assert refused.value.response.status_code == 503
        assert "full" in refused.value.response.json()["detail"]

        async with httpx.AsyncClient(base_url=fake_server, timeout=20) as http:
            # a session named by /chat speaks the reply too
            reply = await http.post("/chat", json={"text": "via http", "session_id": probes[0].session_id})
            assert reply.json() == {"reply": "You said: via http"}
            assert (await probes[0].next_event("speaking"))["text"] == "You said: via http"
            # hanging up frees the place: by DELETE, and by the peer going away
            assert (await http.delete(f"/session/{probes[1].session_id}")).status_code == 200
            await probes[2].close()
            deadline = time.monotonic() + 15
            while (await http.get("/health")).json()["sessions"] > 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert (await http.get("/health")).json()["sessions"] == 1
        again = AvatarProbe(fake_server)
        await again.connect()
        probes.append(again)
    finally:
        for probe in probes:
            await probe.close()
