"""ChatterBot's indexed text search, run over an in-memory snapshot of the statement table.

ChatterBot's `IndexedTextSearch` asks the database for every statement whose indexed prompt contains any word
of the message, builds an ORM object per row (one more query each for its tags), scores each one with the
comparator in id order and yields every new best; `BestMatch` keeps the first yield that reaches its
`maximum_similarity_threshold`, else the last. Over the whole English corpus that takes from a few tens of
milliseconds to several seconds a message (bench/bot_latency.py --stock).

The bot is read-only, so the table cannot change under it. This search reads the columns it needs once,
applies the same word filter, scores with the same comparator, and yields only the statement `BestMatch`
would settle on. It finds it by visiting candidates best-bound first and stops when no remaining candidate
can change the outcome. The bounds are upper bounds on `SequenceMatcher.ratio` (what ChatterBot's
Levenshtein comparator computes): difflib's own quick_ratio for all candidates at once, then the longest
common subsequence per candidate, before the comparator itself runs. A `floor` lets it skip candidates that
cannot reach the confidence below which the bot would not use an answer anyway.
"""
from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from chatterbot.comparisons import LevenshteinDistance
from chatterbot.conversation import Statement
from chatterbot.search import IndexedTextSearch
from sqlalchemy import select


@dataclass(frozen=True)
class Candidate:
    """One stored statement as the search sees it: a reply (`text`) to a prompt (`in_response_to`)."""

    id: int
    text: str
    search_text: str
    conversation: str
    in_response_to: str | None
    search_in_response_to: str

    def as_statement(self, confidence: float) -> Statement:
        return Statement(
            text=self.text, in_response_to=self.in_response_to, id=self.id, search_text=self.search_text,
            search_in_response_to=self.search_in_response_to, conversation=self.conversation,
            confidence=confidence,
        )


@dataclass(frozen=True)
class Snapshot:
    """The candidates in id order, with what the filter and the similarity bound need, precomputed."""

    candidates: tuple[Candidate, ...]
    index_lower: list[str]          # search_in_response_to.lower() per candidate: SQL LIKE ignores ASCII case
    prompts_lower: list[str]        # in_response_to.lower() per candidate ('' for none): what the comparator sees
    prompt_lengths: np.ndarray      # int64 [N] len(prompts_lower)
    char_counts: np.ndarray         # int32 [N, K] count of each alphabet character in in_response_to.lower()
    alphabet: dict[str, int]        # character -> column of char_counts
    prompt_masks: tuple[dict[str, int], ...]  # per candidate: character -> bit set of its positions in the prompt

    def __len__(self) -> int:
        return len(self.candidates)


def load_candidates(storage) -> tuple[Candidate, ...]:
    """The statements ChatterBot's search considers (human side, with an indexed prompt), in id order."""
    model = storage.get_model("statement")
    query = (
        select(model.id, model.text, model.search_text, model.conversation, model.in_response_to,
               model.search_in_response_to, model.persona)
        .where(model.search_in_response_to.is_not(None))
        .order_by(model.id)
    )
    with storage.engine.connect() as connection:
        rows = connection.execute(query).all()
    # ChatterBot's `persona_not_startswith='bot:'` (a NULL persona never passes in SQL either).
    return tuple(
        Candidate(id=row.id, text=row.text, search_text=row.search_text or "", conversation=row.conversation or "",
                  in_response_to=row.in_response_to, search_in_response_to=row.search_in_response_to)
        for row in rows if row.persona is not None and not row.persona.lower().startswith("bot:")
    )


def load_snapshot(storage) -> Snapshot:
    """Read the candidates and precompute what the Levenshtein bounds need."""
    rows = load_candidates(storage)
    prompts = [(row.in_response_to or "").lower() for row in rows]
    alphabet = {ch: column for column, ch in enumerate(sorted(set("".join(prompts))))}
    char_counts = np.zeros((len(rows), max(len(alphabet), 1)), np.int32)
    for i, prompt in enumerate(prompts):
        for ch, count in Counter(prompt).items():
            char_counts[i, alphabet[ch]] = count
    return Snapshot(
        candidates=rows,
        index_lower=[row.search_in_response_to.lower() for row in rows],
        prompts_lower=prompts,
        prompt_lengths=np.array([len(prompt) for prompt in prompts], np.int64),
        char_counts=char_counts,
        alphabet=alphabet,
        prompt_masks=tuple(position_masks(prompt) for prompt in prompts),
    )


def position_masks(text: str) -> dict[str, int]:
    """For each character of `text`, the bit set of the positions where it occurs."""
    masks: dict[str, int] = {}
    for position, ch in enumerate(text):
        masks[ch] = masks.get(ch, 0) | (1 << position)
    return masks


def lcs_length(text: str, masks: dict[str, int], length: int) -> int:
    """Length of the longest common subsequence of `text` and the string of `length` characters that `masks`
    describes (Hyyro's bit-parallel algorithm). difflib's matching blocks are a common subsequence, so
    2 * LCS / (len(a) + len(b)) bounds SequenceMatcher.ratio from above, much closer than quick_ratio."""
    all_ones = (1 << length) - 1
    v = all_ones
    for ch in text:
        u = v & masks.get(ch, 0)
        v = ((v + u) | (v - u)) & all_ones
    return length - v.bit_count()


def containing(word: str, index_lower: list[str]) -> list[int]:
    """Positions of the indexed prompts that pass SQL `LIKE '%word%'`, what ChatterBot's
    `search_in_response_to_contains` compiles to (`%` and `_` in the word are wildcards there too)."""
    if "%" not in word and "_" not in word:
        lowered = word.lower()
        return [i for i, value in enumerate(index_lower) if lowered in value]
    pattern = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in word)
    regex = re.compile(pattern, re.IGNORECASE | re.DOTALL)
    return [i for i, value in enumerate(index_lower) if regex.search(value)]


def ratio_bounds(text_lower: str, snapshot: Snapshot, positions: np.ndarray) -> np.ndarray:
    """Per candidate, an upper bound on SequenceMatcher(None, text, prompt).ratio(): difflib's quick_ratio
    (characters the two share, counted with multiplicity), computed the way difflib computes ratios."""
    text_counts = np.zeros(snapshot.char_counts.shape[1], np.int32)
    for ch, count in Counter(text_lower).items():
        if ch in snapshot.alphabet:  # characters no prompt has add nothing to what they share
            text_counts[snapshot.alphabet[ch]] = count
    common = np.minimum(snapshot.char_counts[positions], text_counts).sum(axis=1)
    total = len(text_lower) + snapshot.prompt_lengths[positions]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, 2.0 * common / total, 1.0)


class SnapshotTextSearch(IndexedTextSearch):
    """`IndexedTextSearch` over an in-memory copy of the statement table; for read-only bots only.

    stop_at: the adapter's `maximum_similarity_threshold` (BestMatch keeps the first match reaching it).
    floor: matches scoring below it may be skipped (the caller treats them as no match).
    """

    name = "snapshot_text_search"

    def __init__(self, chatbot, stop_at: float = 0.95, floor: float = 0.0, **kwargs):
        super().__init__(chatbot, **kwargs)
        if type(self.compare_statements) is not LevenshteinDistance:
            raise ValueError("SnapshotTextSearch bounds difflib's ratio: it needs the LevenshteinDistance "
                             "comparator.")
        if not 0.0 <= floor <= stop_at:
            raise ValueError(f"floor must lie in [0, stop_at]; got floor={floor}, stop_at={stop_at}.")
        self.stop_at = stop_at
        self.floor = floor
        self._snapshot: Snapshot | None = None
        self._load_lock = threading.Lock()

    def snapshot(self) -> Snapshot:
        """The statement table as the search sees it, read from the database on first use."""
        with self._load_lock:
            if self._snapshot is None:
                self._snapshot = load_snapshot(self.chatbot.storage)
            return self._snapshot

    def search(self, input_statement: Statement, **additional_parameters) -> Iterator[Statement]:
        if additional_parameters:  # filters this snapshot does not model: ask the database
            yield from super().search(input_statement, **additional_parameters)
            return
        match = self.best_match(input_statement.text, input_statement.search_text)
        if match is not None:
            yield match

    def best_match(self, text: str, search_text: str) -> Statement | None:
        """What BestMatch settles on when fed ChatterBot's search: the lowest-id candidate scoring at least
        `stop_at` if any, else the lowest-id one with the highest positive score (None if below `floor`)."""
        snapshot = self.snapshot()
        matching: set[int] = set()
        for word in set(search_text.split(" ")):
            matching.update(containing(word, snapshot.index_lower))
        positions = np.fromiter(matching, np.int64, len(matching))
        bounds = ratio_bounds(text.lower(), snapshot, positions)
        # Rounding is monotone, so a raw bound below floor - 0.005 cannot round up to floor; keep the rest.
        keep = bounds >= self.floor - 0.0051
        positions, bounds = positions[keep], bounds[keep]
        order = np.argsort(-bounds, kind="stable")  # best bound first

        text_lower = text.lower()
        text_masks = position_masks(text_lower)
        hit: tuple[float, Candidate] | None = None   # lowest-id candidate scoring >= stop_at
        best: tuple[float, Candidate] | None = None  # lowest-id candidate with the highest score
        for position, raw_bound in zip(positions[order].tolist(), bounds[order].tolist()):
            bound = round(raw_bound, 2)  # the comparator rounds its score the same way
            if bound < self._needed(hit, best):
                break  # bounds only fall from here on
            candidate = snapshot.candidates[position]
            if not self._may_change(bound, candidate.id, hit, best):
                continue
            prompt_length = int(snapshot.prompt_lengths[position])
            if prompt_length < len(text_lower):  # the cost grows with the string walked over: walk the shorter
                lcs = lcs_length(snapshot.prompts_lower[position], text_masks, len(text_lower))
            else:
                lcs = lcs_length(text_lower, snapshot.prompt_masks[position], prompt_length)
            if not self._may_change(round(2.0 * lcs / (len(text_lower) + prompt_length), 2), candidate.id, hit, best):
                continue
            score = self.compare_statements.compare_text(text, candidate.in_response_to)
            if score >= self.stop_at and (hit is None or candidate.id < hit[1].id):
                hit = (score, candidate)
            if best is None or score > best[0] or (score == best[0] and candidate.id < best[1].id):
                best = (score, candidate)

        chosen = hit or best
        if chosen is None or chosen[0] <= 0 or chosen[0] < self.floor:
            return None
        return chosen[1].as_statement(chosen[0])

    def _needed(self, hit: tuple[float, Candidate] | None, best: tuple[float, Candidate] | None) -> float:
        """The lowest score that could still change the outcome."""
        if hit is not None:
            return self.stop_at
        if best is not None:
            return max(best[0], self.floor)
        return max(self.floor, 0.01)  # scores are rounded to hundredths and must be positive

    def _may_change(self, bound: float, candidate_id: int, hit, best) -> bool:
        """Whether a candidate whose score is at most `bound` could change the outcome."""
        if bound <= 0 or bound < self.floor:
            return False
        if hit is not None:
            return bound >= self.stop_at and candidate_id < hit[1].id
        if best is not None:
            return bound > best[0] or (bound == best[0] and candidate_id < best[1].id)
        return True
