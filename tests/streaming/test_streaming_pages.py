"""The app serves its own pages and script (no CDN), and the pages say that the avatar is an AI."""
from __future__ import annotations

import re

from fastapi.testclient import TestClient

from streaming.app import STATIC_DIR, create_app
from streaming_support import ToneEngine, ToneResponder, loopback_settings


def test_pages_and_assets_are_served_locally() -> None:
    with TestClient(create_app(loopback_settings(), engine=ToneEngine(), responder=ToneResponder())) as client:
        for path in ("/", "/kiosk"):
            page = client.get(path)
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            assert "talking to an AI" in page.text
            assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
            assert "/static/app.js" in assets
            for asset in assets:
                assert asset.startswith("/static/") or asset.startswith("data:"), asset   # nothing from elsewhere
                if asset.startswith("/static/"):
                    assert client.get(asset).status_code == 200
        assert client.get("/health").json() == {"status": "ok", "sessions": 0, "max_sessions": 8}
        assert client.post("/chat", json={"text": "hi"}).json() == {"reply": "You said: hi"}
    for path in STATIC_DIR.iterdir():
        assert not re.search(r"https?://", path.read_text()), f"{path.name} loads something from the network"
