"""Matching by meaning inside ChatterBot: a comparator (`statement_comparison_function`) that scores two
texts by the cosine of their sentence embeddings, and a search that scores every stored prompt at once.

The prompts' embeddings are computed once, when the bot is trained, and kept in a table of our own beside
ChatterBot's (`store_prompt_embeddings`); a reply costs one embedding (the message's) and a matrix-vector
product. Statements trained from a deployment's own corpus (conversation `DEPLOYMENT_CONVERSATION`) are
preferred over the general corpus when both match.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from chatterbot.comparisons import Comparator
from chatterbot.conversation import Statement
from chatterbot.logic import BestMatch
from chatterbot.search import IndexedTextSearch
from sqlalchemy import Column, Integer, LargeBinary, MetaData, Table, Text, select
from sqlalchemy.engine import Engine

from bot.embedding import SentenceEncoder, from_bytes, load_encoder, to_bytes
from bot.search import Candidate, load_candidates

DEPLOYMENT_CONVERSATION = "deployment"  # ChatterBot's `conversation` of statements from a deployment's corpus

_metadata = MetaData()
embedding_table = Table(
    "avatar_bot_embedding", _metadata,
    Column("id", Integer, primary_key=True),
    Column("text", Text, nullable=False),
    Column("vector", LargeBinary, nullable=False),   # float32 little-endian, unit length
)


class EmbeddingSimilarity(Comparator):
    """ChatterBot comparator: cosine similarity of the two texts' sentence embeddings, clipped to [0, 1]."""

    def __init__(self, language=None, encoder: SentenceEncoder | None = None):
        super().__init__(language)
        self.encoder = encoder or load_encoder()

    def compare_text(self, text_a: str, text_b: str) -> float:
        if not text_a or not text_b:
            return 0.0
        return clip(float(self.encoder.vector(text_a) @ self.encoder.vector(text_b)))


def clip(similarity: float) -> float:
    return min(1.0, max(0.0, similarity))


def prompt_texts(storage) -> list[str]:
    """The distinct prompts the search compares messages with, in first-seen order."""
    return list(dict.fromkeys(candidate.in_response_to for candidate in load_candidates(storage)
                              if candidate.in_response_to))


def store_prompt_embeddings(engine: Engine, encoder: SentenceEncoder, texts: list[str],
                            progress: Callable[[int], None] | None = None) -> None:
    """Embed `texts` and keep them in the bot's database, replacing whatever was stored."""
    vectors = encoder.encode(texts, progress=progress)
    _metadata.create_all(engine, tables=[embedding_table])
    with engine.begin() as connection:
        connection.execute(embedding_table.delete())
        if texts:
            connection.execute(embedding_table.insert(), [
                {"text": text, "vector": to_bytes(vector)} for text, vector in zip(texts, vectors)])


def load_prompt_embeddings(engine: Engine) -> dict[str, np.ndarray]:
    """The stored prompt embeddings by text (empty when none were stored)."""
    _metadata.create_all(engine, tables=[embedding_table])
    with engine.connect() as connection:
        return {row.text: from_bytes(row.vector) for row in connection.execute(select(embedding_table))}


def clear_prompt_embeddings(engine: Engine) -> None:
    _metadata.create_all(engine, tables=[embedding_table])
    with engine.begin() as connection:
        connection.execute(embedding_table.delete())


@dataclass(frozen=True)
class Index:
    """The candidates in id order and their prompts' embeddings."""

    candidates: tuple[Candidate, ...]
    texts: np.ndarray          # object [N] each candidate's text (its reply)
    prompts: np.ndarray        # float32 [P, H] one row per distinct prompt
    prompt_of: np.ndarray      # int64 [N] row of `prompts` for each candidate
    deployment: np.ndarray     # bool [N] trained from the deployment's corpus


class EmbeddingSearch(IndexedTextSearch):
    """ChatterBot search by meaning over an in-memory index of the statement table; for read-only bots.

    floor: general-corpus matches scoring below it are not returned (the caller treats that as no match).
    deployment_floor: the same for the deployment's corpus, whose questions are few and on topic.
    margin: a deployment-corpus match is taken unless a general one scores more than `margin` higher.
    """

    name = "embedding_search"

    def __init__(self, chatbot, encoder: SentenceEncoder, floor: float = 0.0, deployment_floor: float | None = None,
                 margin: float = 0.2, **kwargs):
        kwargs["statement_comparison_function"] = lambda language: EmbeddingSimilarity(language, encoder)
        super().__init__(chatbot, **kwargs)
        self.encoder = encoder
        self.floor = floor
        self.deployment_floor = floor if deployment_floor is None else deployment_floor
        self.margin = margin
        self._index: Index | None = None
        self._load_lock = threading.Lock()

    def index(self) -> Index:
        """The candidates and their embeddings, read from the database on first use (prompts with no stored
        embedding, such as ones a learning bot added, are embedded then)."""
        with self._load_lock:
            if self._index is None:
                self._index = self._load()
            return self._index

    def _load(self) -> Index:
        candidates = load_candidates(self.chatbot.storage)
        stored = load_prompt_embeddings(self.chatbot.storage.engine)
        self.encoder.remember(stored)
        rows: dict[str, int] = {}
        prompt_of = np.array([rows.setdefault(c.in_response_to or "", len(rows)) for c in candidates], np.int64)
        missing = [text for text in rows if text not in stored]
        vectors = dict(zip(missing, self.encoder.encode(missing))) if missing else {}
        prompts = np.zeros((len(rows), self.encoder.dimension), np.float32)
        for text, row in rows.items():
            prompts[row] = stored[text] if text in stored else vectors[text]
            if not text:
                prompts[row] = 0.0  # a statement with no prompt matches nothing
        deployment = np.array([c.conversation == DEPLOYMENT_CONVERSATION for c in candidates], bool)
        texts = np.array([c.text for c in candidates], dtype=object)
        return Index(candidates, texts, prompts, prompt_of, deployment)

    def search(self, input_statement: Statement, **additional_parameters) -> Iterator[Statement]:
        if additional_parameters:  # filters this index does not model: ChatterBot's database search
            yield from super().search(input_statement, **additional_parameters)
            return
        match = self.best_match(input_statement.text)
        if match is not None:
            yield match

    def best_match(self, text: str, exclude: frozenset[str] = frozenset()) -> Statement | None:
        """The candidate whose prompt is closest in meaning (the lowest id among equals), preferring the
        deployment's corpus and passing over candidates whose reply is in `exclude`; None if nothing reaches
        its corpus's floor."""
        index = self.index()
        if not len(index.candidates):
            return None
        scores = (index.prompts @ self.encoder.vector(text))[index.prompt_of]   # [N]
        usable = ~np.isin(index.texts, list(exclude)) if exclude else np.ones(len(scores), bool)
        general = best_position(scores, usable & ~index.deployment)
        own = best_position(scores, usable & index.deployment)
        if own is not None and scores[own] >= self.deployment_floor and (
                general is None or scores[own] >= scores[general] - self.margin):
            best = own
        elif general is not None and scores[general] >= self.floor:
            best = general
        else:
            return None
        candidate = index.candidates[best]
        return candidate.as_statement(clip(float(scores[best])))


class EmbeddingMatch(BestMatch):
    """ChatterBot's BestMatch for the embedding search: the matched statement is the reply, as in ChatterBot's
    own semantic vector search, so no further queries look for other statements with the same text or for
    the conversation's repeated replies (a read-only bot stores no conversation). Replies in the selection
    parameters' `exclude_text` (what the session repeated lately) are passed over for the next best match."""

    def process(self, input_statement: Statement, additional_response_selection_parameters=None) -> Statement:
        search = self.search_algorithm
        if not isinstance(search, EmbeddingSearch):
            raise TypeError(f"EmbeddingMatch needs the embedding search, not {type(search).__name__}.")
        exclude = frozenset((additional_response_selection_parameters or {}).get("exclude_text") or ())
        match = search.best_match(input_statement.text, exclude)
        return match if match is not None else self.get_default_response(input_statement)


def best_position(scores: np.ndarray, allowed: np.ndarray) -> int | None:
    """Position of the highest score where `allowed` (the first such on ties), or None if none is allowed."""
    if not allowed.any():
        return None
    return int(np.argmax(np.where(allowed, scores, -np.inf)))
