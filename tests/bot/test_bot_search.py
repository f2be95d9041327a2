"""The in-memory search settles on exactly the match ChatterBot's own database search gives BestMatch."""
import random
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from chatterbot import ChatBot
from chatterbot.comparisons import Comparator
from chatterbot.conversation import Statement
from chatterbot.tagging import LowercaseTagger

from bot.search import SnapshotTextSearch, containing, lcs_length, position_masks


def lcs_by_table(a: str, b: str) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def test_bit_parallel_lcs_matches_dynamic_programming():
    rng = random.Random(7)
    for _ in range(500):
        a = "".join(rng.choice("abc d") for _ in range(rng.randint(0, 40)))
        b = "".join(rng.choice("abc d") for _ in range(rng.randint(0, 70)))
        assert lcs_length(a, position_masks(b), len(b)) == lcs_by_table(a, b)


@pytest.mark.parametrize("word", ["you", "YOU", "", "10%", "a_c", "100%_x", "é"])
def test_containing_follows_sql_like(word):
    values = ["what do you do", "abc", "a c", "10% off", "100 percent", "100%_x y", "é", "youth"]
    with closing(sqlite3.connect(":memory:")) as connection:
        connection.execute("CREATE TABLE t (i INTEGER, v TEXT)")
        connection.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(values)))
        expected = [i for (i,) in connection.execute("SELECT i FROM t WHERE v LIKE ? ORDER BY i", (f"%{word}%",))]
    assert containing(word, values) == expected


def stock_best_match(chatbot: ChatBot, text: str, threshold: float = 0.95):
    """BestMatch's loop over ChatterBot's IndexedTextSearch: the first yield reaching the threshold, else the last."""
    statement = Statement(text=text, search_text=chatbot.tagger.get_text_index_string(text))
    closest = None
    for result in chatbot.search_algorithms["indexed_text_search"].search(statement):
        closest = result
        if result.confidence >= threshold:
            break
    return statement.search_text, closest


@pytest.mark.slow
def test_snapshot_search_agrees_with_chatterbot(trained_db: Path):
    chatbot = ChatBot("check", database_uri=f"sqlite:///{trained_db}", tagger=LowercaseTagger, read_only=True)
    try:
        search = SnapshotTextSearch(chatbot, stop_at=0.95, floor=0.0)
        prompts = sorted({c.in_response_to for c in search.snapshot().candidates if c.in_response_to})
        rng = random.Random(3)
        inputs = rng.sample(prompts, 6) + [
            "What is AI?", "do you know gossip", "when do you open", "can i talk to someone",
            "how much does it cost", "the weather is 100% nice_today", "zzqx",
            "hi how it is goin",  # below the threshold, tied between several answers to one prompt
        ]
        for text in inputs:
            search_text, expected = stock_best_match(chatbot, text)
            found = search.best_match(text, search_text)
            assert (found and (found.id, found.text, found.confidence)) == (
                expected and (expected.id, expected.text, expected.confidence)), text
    finally:
        chatbot.storage.close()


def test_floor_drops_weak_matches(trained_db: Path):
    chatbot = ChatBot("check", database_uri=f"sqlite:///{trained_db}", tagger=LowercaseTagger, read_only=True)
    try:
        loose = SnapshotTextSearch(chatbot, stop_at=0.95, floor=0.0)
        strict = SnapshotTextSearch(chatbot, stop_at=0.95, floor=0.9)
        text = "my order has not arrived yet"
        weak = loose.best_match(text, text.lower())
        assert weak is not None and 0 < weak.confidence < 0.9
        assert strict.best_match(text, text.lower()) is None
        exact = strict.best_match("What is AI?", "what is ai?")
        assert exact is not None and exact.confidence == 1.0
    finally:
        chatbot.storage.close()


def test_snapshot_needs_the_levenshtein_comparator(trained_db: Path):
    class OtherComparator(Comparator):
        pass

    chatbot = ChatBot("check", database_uri=f"sqlite:///{trained_db}", tagger=LowercaseTagger, read_only=True)
    try:
        with pytest.raises(ValueError, match="LevenshteinDistance"):
            SnapshotTextSearch(chatbot, statement_comparison_function=OtherComparator)
    finally:
        chatbot.storage.close()
