"""Our customer-service corpus is trained on top of the English corpus and answers its questions."""
from pathlib import Path

import pytest
import yaml

from bot.responder import ChatResponder

CORPUS = Path(__file__).resolve().parents[2] / "bot" / "corpus" / "customer_service.yml"


def corpus_answer(prompt: str) -> str:
    conversations = yaml.safe_load(CORPUS.read_text(encoding="utf-8"))["conversations"]
    return next(conversation[1] for conversation in conversations if conversation[0] == prompt)


@pytest.mark.parametrize("message, corpus_prompt", [
    ("What are your opening hours?", "What are your opening hours?"),
    ("what are your opening hours", "What are your opening hours?"),
    ("I want to talk to a human", "I want to talk to a human"),
    ("I want to talk to a human please", "I want to talk to a human"),
    ("Can I speak to a real person?", "Can I speak to a real person?"),
    ("What can you do?", "What can you do?"),
    ("Are you open on Sunday?", "Are you open on Sunday?"),
    ("Goodbye", "Goodbye"),
])
def test_customer_service_questions(responder: ChatResponder, message: str, corpus_prompt: str):
    assert responder.reply(message, session_id=f"cs-{message}") == corpus_answer(corpus_prompt)


def test_corpus_answers_say_what_matters():
    assert "Monday" in corpus_answer("What are your opening hours?")
    assert "AI" in corpus_answer("I want to talk to a human")
