"""Conversations never change the bot's database, and a trained database is not trained again."""
from pathlib import Path

from bot.responder import ChatResponder, build_chatbot
from bot.training import ensure_trained

from botdb import settings_for, table_digest

MESSAGES = ["Hello", "What is AI?", "I want to talk to a human", "Hello", "Hello", "Hello", "Hello",
            "\U0001f600", "Tell me a joke", "my order has not arrived yet", "Goodbye"]


def test_conversations_leave_the_database_unchanged(trained_db: Path):
    counts_before, digest_before = table_digest(trained_db)
    assert counts_before["statement"] > 3500  # the English corpus (less its code answers) plus ours

    with ChatResponder.create(settings_for(trained_db)) as responder:
        for index, message in enumerate(MESSAGES * 2):
            responder.reply(message, session_id=f"customer-{index % 3}")

    counts_after, digest_after = table_digest(trained_db)
    assert counts_after == counts_before
    assert digest_after == digest_before


def test_digest_notices_a_change(trained_db: Path):
    """The check above can fail: a bot that learns changes the digest."""
    _, digest_before = table_digest(trained_db)
    learning = ChatResponder.create(settings_for(trained_db, read_only=False))
    with learning:
        learning.reply("What is AI?", session_id="learner")
    _, digest_after = table_digest(trained_db)
    assert digest_after != digest_before


def test_trained_database_is_not_trained_again(trained_db: Path):
    counts_before, digest_before = table_digest(trained_db)
    chatbot = build_chatbot(settings_for(trained_db))
    try:
        assert ensure_trained(chatbot, show_progress=False) is False
    finally:
        chatbot.storage.close()
    assert table_digest(trained_db) == (counts_before, digest_before)
