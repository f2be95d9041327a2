"""Bot settings: where the database lives and what is refused."""
from pathlib import Path

import pytest

from bot.responder import REPO_ROOT, BotSettings, default_database_url


def test_default_database_is_an_sqlite_file_under_var(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("AVATAR_BOT_DB", raising=False)
    settings = BotSettings()
    assert settings.database_url == f"sqlite:///{REPO_ROOT / 'var' / 'bot.sqlite3'}"
    assert settings.sqlite_path == REPO_ROOT / "var" / "bot.sqlite3"
    assert settings.read_only is True and settings.max_message_chars == 2000


def test_environment_can_name_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("AVATAR_BOT_DB", str(tmp_path / "elsewhere.sqlite3"))
    assert default_database_url() == f"sqlite:///{tmp_path / 'elsewhere.sqlite3'}"


def test_environment_can_name_a_server(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AVATAR_BOT_DB", "postgresql://bot:secret@db.internal:5432/avatar")
    assert BotSettings().database_url == "postgresql://bot:secret@db.internal:5432/avatar"


def test_postgresql_url_is_kept_as_is():
    url = "postgresql+psycopg://bot:secret@localhost/avatar"
    settings = BotSettings(database_url=url)
    assert settings.database_url == url
    assert settings.sqlite_path is None


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite_is_refused(url):
    with pytest.raises(ValueError, match="in-memory"):
        BotSettings(database_url=url)


@pytest.mark.parametrize("overrides, message", [
    ({"database_url": "not a url"}, "Not a database URL"),
    ({"max_message_chars": 0}, "at least 1"),
    ({"min_confidence": 0.99}, "min_confidence"),
])
def test_bad_settings_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        BotSettings(**overrides)
