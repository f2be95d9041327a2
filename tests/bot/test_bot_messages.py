"""Unusable messages raise InvalidMessage with a clear reason; emoji-only text gets a clear reply."""
import pytest

from bot.messages import InvalidMessage, has_words, normalise_message
from bot.responder import ChatResponder


@pytest.mark.parametrize("message", ["", "   ", "\n\t \r\n", "\x00\x00"])
def test_empty_messages_are_refused(message):
    with pytest.raises(InvalidMessage, match="empty"):
        normalise_message(message, max_chars=2000)


def test_long_message_is_refused_with_the_limit():
    with pytest.raises(InvalidMessage, match=r"too long \(10,000 characters\); the limit is 2,000"):
        normalise_message("a" * 10_000, max_chars=2000)


def test_invalid_utf8_bytes_are_refused():
    with pytest.raises(InvalidMessage, match="not valid UTF-8"):
        normalise_message(b"hello \xff\xfe world", max_chars=2000)


def test_valid_utf8_bytes_are_decoded():
    assert normalise_message("caf\u00e9?".encode(), max_chars=2000) == "caf\u00e9?"


def test_lone_surrogates_are_refused():
    with pytest.raises(InvalidMessage, match="not valid text"):
        normalise_message("hi \ud800", max_chars=2000)


def test_non_text_is_refused():
    with pytest.raises(InvalidMessage, match="must be text"):
        normalise_message(42, max_chars=2000)  # type: ignore[arg-type]


def test_normalisation_is_nfc_single_spaced_without_controls():
    assert normalise_message("  cafe\u0301\x1b\tis\n\n open  ", max_chars=2000) == "caf\u00e9 is open"


def test_length_counts_after_normalisation():
    assert normalise_message("hi" + " " * 5000, max_chars=10) == "hi"


def test_invalid_message_is_a_value_error():
    assert issubclass(InvalidMessage, ValueError)


@pytest.mark.parametrize("text, expected", [("\U0001f44d\U0001f600", False), ("?!...", False),
                                            ("\U0001f44d ok", True), ("42", True), ("\u00e9t\u00e9", True)])
def test_has_words(text, expected):
    assert has_words(text) is expected


@pytest.mark.parametrize("message, reason", [
    ("", "empty"),
    (" \n ", "empty"),
    ("x" * 10_000, "too long"),
    (b"\xc3\x28 broken", "not valid UTF-8"),
])
def test_responder_refuses_unusable_messages(responder: ChatResponder, message, reason):
    with pytest.raises(InvalidMessage, match=reason):
        responder.reply(message, session_id="invalid")


def test_refused_messages_leave_no_trace_in_the_session(responder: ChatResponder):
    with pytest.raises(InvalidMessage):
        responder.reply("x" * 10_000, session_id="trace")
    assert responder.history("trace") == ()


def test_ten_thousand_words_of_emoji_are_refused_not_crashed(responder: ChatResponder):
    with pytest.raises(InvalidMessage, match="too long"):
        responder.reply("\U0001f600" * 10_000, session_id="emoji-long")


@pytest.mark.parametrize("message", [
    "\U0001f44d", "\U0001f600\U0001f600 \U0001f389", "\U0001f468\u200d\U0001f469\u200d\U0001f467", "???",
])
def test_emoji_only_messages_get_the_no_words_reply(responder: ChatResponder, message):
    assert responder.reply(message, session_id="emoji") == responder.settings.no_words_reply


def test_validate_returns_the_normalised_text(responder: ChatResponder):
    assert responder.validate(b"  What is   AI? ") == "What is AI?"


def test_bytes_are_answered_like_text(responder: ChatResponder):
    assert responder.reply("What is AI?".encode(), "bytes") == responder.reply("What is AI?", "text")


def test_unknown_words_get_the_fallback_reply(responder: ChatResponder):
    assert responder.reply("xyzzy plugh qwertz", session_id="unknown") == responder.settings.fallback_reply
