"""The app serves its own pages and script (no CDN), and the pages say that the avatar is an AI, and which one."""
from __future__ import annotations

import re

from fastapi.testclient import TestClient

from avatar.types import BUILT_IN_NAME
from streaming.app import STATIC_DIR, create_app
from streaming_support import ToneEngine, ToneResponder, loopback_settings


def test_pages_and_assets_are_served_locally() -> None:
    with TestClient(create_app(loopback_settings(), engine=ToneEngine(), responder=ToneResponder()), base_url="http://localhost") as client:
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
        assert client.post("/chat", json={"text": "hi"}).json()["reply"] == "You said: hi"
    for path in STATIC_DIR.iterdir():
        assert not re.search(r"https?://", path.read_text()), f"{path.name} loads something from the network"


def test_avatar_route_names_the_engine_s_avatar_and_its_consent() -> None:
    name = 'Ada <img src=x onerror="alert(1)">'    # a bundle's name is whatever its maker typed
    consent = ("subject: Ada Lovelace, consent file sha256 " + "ab" * 32,)
    with TestClient(create_app(loopback_settings(), engine=ToneEngine(name, consent),
                               responder=ToneResponder()), base_url="http://localhost") as client:
        assert client.get("/avatar").json() == {"name": name, "built_in": False, "consent": list(consent)}
    with TestClient(create_app(loopback_settings(), engine=ToneEngine(), responder=ToneResponder()),
                    base_url="http://localhost") as client:
        assert client.get("/avatar").json() == {"name": BUILT_IN_NAME, "built_in": True, "consent": []}


def test_pages_have_a_place_for_the_avatar_s_name_filled_as_text() -> None:
    for page in ("index.html", "kiosk.html"):
        html = (STATIC_DIR / page).read_text()
        assert 'talking to an AI<span id="avatar-name"></span>' in html, page           # the name follows the notice
        assert re.search(r'id="avatar-consent"[^>]*\bhidden\b', html), page             # shown only with consent
    script = (STATIC_DIR / "app.js").read_text()
    assert 'fetch("/avatar")' in script
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script   # the name is never parsed as markup
