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


def test_one_environment_variable_takes_a_path_or_a_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("AVATAR_BOT_DB", raising=False)
    monkeypatch.setenv("AVATAR_DATABASE_URL", str(tmp_path / "bot.sqlite3"))
    assert BotSettings().database_url == f"sqlite:///{tmp_path / 'bot.sqlite3'}"
    monkeypatch.setenv("AVATAR_DATABASE_URL", "postgresql+psycopg2://bot@db.internal/avatar")
    assert BotSettings().database_url == "postgresql+psycopg2://bot@db.internal/avatar"
    monkeypatch.setenv("AVATAR_BOT_DB", "postgresql+psycopg2://old@db.internal/avatar")
    assert BotSettings().database_url == "postgresql+psycopg2://bot@db.internal/avatar"   # the new name wins


def test_the_old_variable_still_works_and_says_it_is_deprecated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture):
    monkeypatch.delenv("AVATAR_DATABASE_URL", raising=False)
    monkeypatch.setenv("AVATAR_BOT_DB", str(tmp_path / "old.sqlite3"))
    with caplog.at_level("WARNING", logger="bot.responder"):
        assert BotSettings().database_url == f"sqlite:///{tmp_path / 'old.sqlite3'}"
    assert "AVATAR_BOT_DB is deprecated" in caplog.text and "AVATAR_DATABASE_URL" in caplog.text


@pytest.mark.parametrize("given", ["var/x.sqlite3", "x.db", "~/bots/bot.sqlite"])
def test_a_path_is_an_sqlite_file(given: str):
    assert BotSettings(database_url=given).database_url == f"sqlite:///{Path(given).expanduser().resolve()}"
