"""Fixtures for the bot tests: one trained database per corpus version, cached under var/, copied per test."""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from botdb import copy_sqlite, settings_for

from bot.responder import ChatResponder, build_chatbot
from bot.training import corpus_fingerprint, ensure_trained

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / "var" / "cache" / "bot"
EXAMPLE_CORPORA = (REPO_ROOT / "assets" / "corpora" / "customer_service_example.yml",
                   REPO_ROOT / "assets" / "corpora" / "assistive_care_example.yml")


def trained_cache(corpus: Sequence[Path] = ()) -> Path:
    """A database trained on the current corpus (plus a deployment's `corpus`), trained once and kept under
    var/ for later test runs."""
    cached = CACHE_DIR / f"trained-{corpus_fingerprint(corpus)}.sqlite3"
    if not cached.exists():
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        building = CACHE_DIR / f"building-{os.getpid()}.sqlite3"
        chatbot = build_chatbot(settings_for(building))
        try:
            assert ensure_trained(chatbot, corpus=corpus, show_progress=False)
        finally:
            chatbot.storage.close()
        staged = CACHE_DIR / f"staged-{os.getpid()}.sqlite3"
        copy_sqlite(building, staged)
        os.replace(staged, cached)  # atomic: a parallel run sees the whole file or none
        for leftover in CACHE_DIR.glob(f"building-{os.getpid()}.sqlite3*"):
            leftover.unlink()
    return cached


@pytest.fixture(scope="session")
def trained_db_cache() -> Path:
    """A database trained on the current corpus."""
    return trained_cache()


@pytest.fixture
def trained_db(trained_db_cache: Path, tmp_path: Path) -> Path:
    """A private copy of the trained database for one test."""
    path = tmp_path / "bot.sqlite3"
    copy_sqlite(trained_db_cache, path)
    return path


@pytest.fixture(scope="session")
def responder(trained_db_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatResponder]:
    """One responder shared by the tests that only talk to it (each test uses its own session ids)."""
    path = tmp_path_factory.mktemp("bot") / "bot.sqlite3"
    copy_sqlite(trained_db_cache, path)
    with ChatResponder.create(settings_for(path)) as shared:
        yield shared


@pytest.fixture(scope="session")
def faq_responder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatResponder]:
    """A responder for a deployment with both example FAQs of assets/corpora/."""
    path = tmp_path_factory.mktemp("faqbot") / "bot.sqlite3"
    copy_sqlite(trained_cache(EXAMPLE_CORPORA), path)
    with ChatResponder.create(settings_for(path, corpus=EXAMPLE_CORPORA)) as shared:
        yield shared
