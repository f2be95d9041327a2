"""Nothing the avatar says aloud is code, markup, a link or an emoji name."""
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
import yaml

from bot.responder import ChatResponder
from bot.speakable import unspeakable_reason
from bot.training import english_corpus_files


@pytest.mark.parametrize("text, reason", [
    ("Here it is:\n\n```\nprint('hi')\n```", "code"),
    ("Use `git status` for that", "code"),
    ("See https://example.org/help", "link"),
    ("Go to www.example.com", "link"),
    ("Click <b>here</b>", "markup"),
    ("Set {name} first", "markup"),
    ("Great :thumbsup:", "emoji name"),
    ("Great \U0001f44d", "emoji"),
    ("Computers are very dumb. They only execute instructions given by humans.", None),
    ("We are open from 9 am to 6 pm, Monday to Friday.", None),
])
def test_unspeakable_reason(text, reason):
    assert unspeakable_reason(text) == reason


def test_trained_statements_are_speakable(trained_db: Path):
    with closing(sqlite3.connect(trained_db)) as connection:
        texts = [text for (text,) in connection.execute("SELECT text FROM statement")]
    assert texts and [text for text in texts if unspeakable_reason(text)] == []


def test_no_reply_to_an_english_corpus_question_is_unspeakable(responder: ChatResponder):
    questions = {statement for path in english_corpus_files()
                 for conversation in yaml.safe_load(path.read_text(encoding="utf-8"))["conversations"]
                 if isinstance(conversation, list)
                 for statement in conversation[:-1] if isinstance(statement, str)}
    assert len(questions) > 1000
    kinds = {}
    for index, question in enumerate(sorted(questions)):
        reply = responder.respond(question, session_id=f"corpus-{index % 50}")
        assert not any(mark in reply.text for mark in ("`", "http", "<", "{")), (question, reply.text)
        kinds[reply.kind] = kinds.get(reply.kind, 0) + 1
    assert kinds.get("urgent", 0) <= 0.01 * len(questions), kinds  # few false alarms on everyday chat
