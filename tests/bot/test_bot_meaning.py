"""A deployment's FAQ answers everyday rewordings of its questions, is preferred over the general corpus,
and what nobody can answer gets the fallback."""
from pathlib import Path

import pytest
import yaml
from conftest import EXAMPLE_CORPORA
from paraphrases import ASSISTIVE_CARE, CUSTOMER_SERVICE, OUT_OF_SCOPE
from test_bot_paper import PAPER_ANSWERS

from bot.responder import ChatResponder


def faq_answers(paths: tuple[Path, ...]) -> dict[str, str]:
    return {question: answer for path in paths
            for question, answer in yaml.safe_load(path.read_text(encoding="utf-8"))["conversations"]}


def test_paraphrases_of_the_faq_get_its_answers(faq_responder: ChatResponder):
    answers = faq_answers(EXAMPLE_CORPORA)
    paraphrases = {**CUSTOMER_SERVICE, **ASSISTIVE_CARE}
    assert len(paraphrases) >= 30 and set(paraphrases.values()) <= set(answers)
    assert not set(paraphrases) & set(answers)  # worded differently from the FAQ
    wrong = {}
    for index, (message, question) in enumerate(paraphrases.items()):
        reply = faq_responder.respond(message, session_id=f"faq-{index}")
        if (reply.text, reply.kind) != (answers[question], "answer"):
            wrong[message] = reply.text
    assert len(wrong) <= 0.1 * len(paraphrases), wrong


def test_the_faq_wins_over_the_general_corpus(faq_responder: ChatResponder, responder: ChatResponder):
    """Both corpora know about Sunday opening hours; the deployment's answer is the one given."""
    answers = faq_answers(EXAMPLE_CORPORA)
    assert responder.reply("Are you open on Sunday?", "general") != answers["Are you open on Sundays?"]
    assert faq_responder.reply("Are you open on Sunday?", "faq") == answers["Are you open on Sundays?"]


def test_the_paper_questions_keep_their_answers_beside_a_faq(faq_responder: ChatResponder):
    assert {question: faq_responder.reply(question, "paper-faq") for question in PAPER_ANSWERS} == PAPER_ANSWERS


@pytest.mark.parametrize("message", OUT_OF_SCOPE)
def test_out_of_scope_questions_get_the_fallback(faq_responder: ChatResponder, message: str):
    reply = faq_responder.respond(message, session_id="out-of-scope")
    assert (reply.text, reply.kind) == (faq_responder.settings.fallback_reply, "fallback")


def test_fallback_says_what_the_avatar_can_do_and_how_to_reach_a_person(responder: ChatResponder):
    fallback = responder.settings.fallback_reply
    assert "I can answer questions" in fallback and "talk to a human" in fallback


def test_levenshtein_stays_available(trained_db: Path):
    from botdb import settings_for

    with ChatResponder.create(settings_for(trained_db, comparison="levenshtein")) as spelling:
        assert spelling.reply("What is AI?", "lev") == PAPER_ANSWERS["What is AI?"]
        assert spelling.respond("xyzzy plugh qwertz", "lev").kind == "fallback"
