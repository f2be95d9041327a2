"""Training at first use: the English corpus plus ours, marked by a corpus fingerprint."""
import shutil
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import pytest
from botdb import settings_for, table_digest

from bot import training
from bot.responder import ChatResponder
from bot.training import MARKER_KEY, corpus_fingerprint, own_corpus_files


def test_own_corpus_is_found():
    assert [path.name for path in own_corpus_files()] == ["customer_service.yml"]


def test_fingerprint_follows_the_corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    original = corpus_fingerprint()
    assert corpus_fingerprint() == original
    copy = tmp_path / "corpus"
    shutil.copytree(training.OWN_CORPUS_DIR, copy)
    monkeypatch.setattr(training, "OWN_CORPUS_DIR", copy)
    assert corpus_fingerprint() == original
    with (copy / "customer_service.yml").open("a", encoding="utf-8") as corpus:
        corpus.write("- - Do you sell gift cards?\n  - Yes, in every store.\n")
    assert corpus_fingerprint() != original


def test_trained_database_holds_both_corpora_and_the_marker(trained_db: Path):
    with closing(sqlite3.connect(trained_db)) as connection:
        marker = connection.execute(
            "SELECT value FROM avatar_bot_training WHERE key = ?", (MARKER_KEY,)).fetchone()
        tags = dict(connection.execute(
            "SELECT tag.name, COUNT(*) FROM tag JOIN tag_association ON tag.id = tag_association.tag_id "
            "GROUP BY tag.name").fetchall())
        last_text = connection.execute("SELECT text FROM statement ORDER BY id DESC LIMIT 1").fetchone()[0]
    assert marker == (corpus_fingerprint(),)
    assert tags["customer service"] >= 20
    assert tags["computers"] > 0 and tags["gossip"] > 0 and tags["AI"] > 0
    assert last_text == "Goodbye, and thank you for your visit!"  # ours, trained on top


@pytest.mark.slow
def test_first_use_trains_once_even_when_two_start_together(tmp_path: Path, trained_db_cache: Path):
    path = tmp_path / "fresh.sqlite3"
    settings = settings_for(path)
    with ThreadPoolExecutor(max_workers=2) as pool:
        responders = list(pool.map(lambda _: ChatResponder.create(settings), range(2)))
    try:
        assert [r.reply("What is AI?", "first-use") for r in responders] == [
            "Artificial Intelligence is the branch of engineering and science devoted to constructing machines "
            "that think."] * 2
    finally:
        for responder in responders:
            responder.close()
    assert table_digest(path)[0] == table_digest(trained_db_cache)[0]  # same row counts: trained exactly once


@pytest.mark.slow
def test_changed_corpus_is_trained_again(trained_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    copy = tmp_path / "corpus"
    shutil.copytree(training.OWN_CORPUS_DIR, copy)
    with (copy / "customer_service.yml").open("a", encoding="utf-8") as corpus:
        corpus.write("- - Do you sell gift cards?\n  - Yes, gift cards are sold at the front desk.\n")
    monkeypatch.setattr(training, "OWN_CORPUS_DIR", copy)
    counts_before, _ = table_digest(trained_db)

    with ChatResponder.create(settings_for(trained_db)) as responder:
        assert responder.reply("Do you sell gift cards?") == "Yes, gift cards are sold at the front desk."
    assert table_digest(trained_db)[0]["statement"] == counts_before["statement"] + 2
