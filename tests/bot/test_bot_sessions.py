"""Each session is its own conversation, and replies are safe from many threads at once."""
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from botdb import settings_for

from bot.responder import ChatResponder, Exchange


def test_history_is_kept_per_session(responder: ChatResponder):
    first = responder.reply("What is AI?", session_id="alice")
    second = responder.reply("Hello", session_id="bob")
    third = responder.reply("What are your opening hours?", session_id="alice")
    assert responder.history("alice") == (
        Exchange("What is AI?", first), Exchange("What are your opening hours?", third))
    assert responder.history("bob") == (Exchange("Hello", second),)
    assert responder.history("nobody") == ()


def test_repeating_a_session_changes_only_that_session(responder: ChatResponder):
    """As in a stored ChatterBot conversation, a reply said three times in a session's last ten
    statements is not given again there; a fresh session still gets it."""
    first = responder.reply("Hello", session_id="repeat-a")
    replies = [responder.reply("Hello", session_id="repeat-a") for _ in range(5)]
    assert any(reply != first for reply in replies)
    assert responder.reply("Hello", session_id="repeat-b") == first


def test_end_session_forgets_it(responder: ChatResponder):
    responder.reply("Hello", session_id="leaving")
    responder.end_session("leaving")
    assert responder.history("leaving") == ()


def test_history_and_sessions_are_bounded(trained_db: Path):
    with ChatResponder.create(settings_for(trained_db, history_turns=2, max_sessions=2)) as responder:
        for message in ["Hello", "What is AI?", "Goodbye"]:
            responder.reply(message, session_id="one")
        responder.reply("Hello", session_id="two")
        responder.reply("Hello", session_id="three")
        assert [exchange.message for exchange in responder.history("three")] == ["Hello"]
        assert responder.history("one") == ()  # least recently used, forgotten
        assert len(responder.history("two")) == 1


def test_concurrent_replies_match_sequential_ones(responder: ChatResponder):
    questions = ["Do you know gossip?", "What is AI?", "What are your opening hours?", "I want to talk to a human",
                 "What was the first computer?", "Tell me a joke", "\U0001f600", "What can you do?"]
    expected = {question: responder.reply(question, session_id=f"seq-{question}") for question in questions}
    jobs = [(question, f"thread-{index}") for index in range(6) for question in questions]

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda job: responder.reply(*job), jobs))

    assert answers == [expected[question] for question, _ in jobs]
    for index in range(6):  # a session's own messages may be answered in any order here, but all of them, once
        history = responder.history(f"thread-{index}")
        assert sorted(exchange.message for exchange in history) == sorted(questions)
        assert all(exchange.reply == expected[exchange.message] for exchange in history)


def test_closed_responder_refuses_to_reply(trained_db: Path):
    responder = ChatResponder.create(settings_for(trained_db))
    responder.close()
    with pytest.raises(RuntimeError, match="closed"):
        responder.reply("Hello")
