"""Urgent messages get the fixed emergency reply (kind "urgent") before any matching; requests for a person
get kind "handover"; ordinary messages get neither."""
from pathlib import Path

import pytest
from botdb import settings_for
from paraphrases import URGENT

from bot.escalation import HANDOVER_EXAMPLES, URGENT_EXAMPLES
from bot.responder import BotSettings, ChatResponder, Reply

ORDINARY = ["Hello", "What is AI?", "Tell me a joke", "What are your opening hours?", "Do you like music?",
            "I fell asleep during the film", "My computer crashed again", "How do I cancel my order?",
            "I love you", "What is the meaning of life?"]

HANDOVER = ["Can I speak with somebody from your team?", "Connect me to an operator",
            "I'd rather talk to a real human than a bot", "Is there a person there?"]


@pytest.mark.parametrize("message", list(URGENT_EXAMPLES) + URGENT)
def test_urgent_messages_get_the_emergency_reply(responder: ChatResponder, message: str):
    assert responder.respond(message, session_id="urgent") == Reply(responder.settings.urgent_text, "urgent")


def test_held_out_urgent_phrasings_are_not_detector_examples():
    assert len(URGENT) >= 10 and not set(URGENT) & set(URGENT_EXAMPLES)


def test_urgent_reply_is_calm_and_says_the_number_digit_by_digit():
    text = BotSettings(database_url="sqlite:///x.sqlite3").urgent_text
    assert "emergency number, 1 1 2," in text and "alerting a person" in text
    assert "9 1 1" in BotSettings(database_url="sqlite:///x.sqlite3", emergency_number="911").urgent_text
    with pytest.raises(ValueError, match="emergency_number"):
        BotSettings(database_url="sqlite:///x.sqlite3", emergency_number="none")


def test_urgent_comes_before_the_faq(faq_responder: ChatResponder):
    reply = faq_responder.respond("I took too many of my tablets by mistake, what do I do", session_id="urgent-faq")
    assert reply.kind == "urgent"


@pytest.mark.parametrize("message", ORDINARY)
def test_ordinary_messages_are_not_escalated(responder: ChatResponder, message: str):
    assert responder.respond(message, session_id="ordinary").kind in ("answer", "fallback")


@pytest.mark.parametrize("message", list(HANDOVER_EXAMPLES) + HANDOVER)
def test_requests_for_a_person_are_handovers(responder: ChatResponder, message: str):
    reply = responder.respond(message, session_id="handover")
    assert reply.kind == "handover" and reply.text
    assert reply.text != responder.settings.fallback_reply


def test_reply_is_the_text_of_respond(responder: ChatResponder):
    assert responder.reply("I can't breathe", "text") == responder.respond("I can't breathe", "kind").text


def test_emergency_number_setting_reaches_the_reply(trained_db: Path):
    with ChatResponder.create(settings_for(trained_db, emergency_number="999")) as responder:
        assert "9 9 9" in responder.reply("I think I am having a heart attack", "uk")
