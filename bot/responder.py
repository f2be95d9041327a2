"""The avatar's dialogue engine: ChatterBot over chatterbot-corpus English, our customer-service corpus and a
deployment's own corpus (`BotSettings.corpus`), matched by meaning (sentence embeddings) or by spelling.

Replies are read-only (a conversation never changes the database, so one customer cannot retrain the bot
that every customer shares), deterministic (ChatterBot's `get_first_response` over an id-ordered candidate
list) and safe to call from worker threads. Each session keeps a short in-memory history, used the way
ChatterBot uses a stored conversation: the previous reply is what a message responds to, and replies the
session keeps repeating are skipped.

`respond()` says what kind of reply it gave (`Reply.kind`), so the service can raise events:
- "urgent": an emergency (bot/escalation.py), answered before any matching with the fixed `urgent_reply`
  (call the emergency number; a person is being alerted);
- "handover": a request to talk to a person (the corpus's answer to "I want to talk to a human", the
  deployment's first, else `handover_reply`);
- "fallback": nothing matched well enough (below `min_confidence`), or the message had no words: the
  fallback says what the avatar can help with and how to reach a person, never a loosely related line;
- "answer": a corpus answer.
`reply()` returns the text alone (the `avatar.types.Responder` protocol).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from chatterbot import ChatBot
from chatterbot.logic import BestMatch
from chatterbot.response_selection import get_first_response
from chatterbot.tagging import LowercaseTagger
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import ORMExecuteState, selectinload

from bot.corpora import CorpusError
from bot.embedding import SentenceEncoder, load_encoder
from bot.escalation import HANDOVER_EXAMPLES, Escalation
from bot.messages import InvalidMessage, has_words, normalise_message
from bot.search import SnapshotTextSearch
from bot.semantic import EmbeddingMatch, EmbeddingSearch, EmbeddingSimilarity
from bot.training import ensure_trained, exclusive

__all__ = ["BotSettings", "ChatResponder", "CorpusError", "Exchange", "InvalidMessage", "Reply", "ReplyKind",
           "default_corpus", "default_database_url", "as_database_url"]

REPO_ROOT = Path(__file__).resolve().parents[1]
MATCH_THRESHOLD = 0.95  # BestMatch's maximum_similarity_threshold (ChatterBot's default): stop at a match this close
DATABASE_ENV = "AVATAR_DATABASE_URL"   # the bot's database, for every command and the service
OLD_DATABASE_ENV = "AVATAR_BOT_DB"     # its former name: still read, with a deprecation warning
SQLITE_SUFFIXES = (".sqlite3", ".sqlite", ".db")
CORPUS_ENV = "AVATAR_CORPUS"
COMPARISONS = ("embedding", "levenshtein")
DEFAULT_MIN_CONFIDENCE = {"embedding": 0.6, "levenshtein": 0.5}

ReplyKind = Literal["answer", "fallback", "urgent", "handover"]

log = logging.getLogger(__name__)


def default_database_url() -> str:
    """$AVATAR_DATABASE_URL (a database URL, or a path to an SQLite file; formerly $AVATAR_BOT_DB), else
    var/bot.sqlite3 in the repository."""
    configured = os.environ.get(DATABASE_ENV, "").strip()
    if not configured and os.environ.get(OLD_DATABASE_ENV, "").strip():
        configured = os.environ[OLD_DATABASE_ENV].strip()
        log.warning("%s is deprecated: name the bot's database with %s (a URL or an SQLite file's path)",
                    OLD_DATABASE_ENV, DATABASE_ENV)
    return as_database_url(configured) if configured else f"sqlite:///{(REPO_ROOT / 'var' / 'bot.sqlite3').resolve()}"


def as_database_url(value: str) -> str:
    """A database URL as it is; a path to an SQLite file (one with a '/' or ending .sqlite3, .sqlite or .db)
    as its sqlite:/// URL. Anything else is returned unchanged, for BotSettings to refuse."""
    if "://" in value:
        return value
    if "/" in value or value.endswith(SQLITE_SUFFIXES):
        return f"sqlite:///{Path(value).expanduser().resolve()}"
    return value


def default_corpus() -> tuple[Path, ...]:
    """$AVATAR_CORPUS: corpus files or folders, as a JSON list or separated by the path separator (':')."""
    configured = os.environ.get(CORPUS_ENV, "").strip()
    if not configured:
        return ()
    names = json.loads(configured) if configured.startswith("[") else configured.split(os.pathsep)
    return tuple(Path(name).expanduser() for name in names if str(name).strip())


def spoken_digits(number: str) -> str:
    """A phone number as separate digits ('112' -> '1 1 2'), so speech says one-one-two, not a hundred and twelve."""
    return " ".join(ch for ch in number if ch.isdigit() or ch == "+")


@dataclass(frozen=True)
class BotSettings:
    """How the bot is stored, named, bounded, matched and escalated."""

    database_url: str = field(default_factory=default_database_url)  # SQLAlchemy URL; PostgreSQL works as is
    name: str = "Avatar"
    max_message_chars: int = 2000       # longer messages are refused with InvalidMessage
    read_only: bool = True              # False lets conversations train the bot (ChatterBot's learning)
    show_progress: bool = True          # progress bars while training at first use
    history_turns: int = 10             # exchanges remembered per session
    max_sessions: int = 1000            # beyond this the least recently used session is forgotten
    corpus: tuple[Path, ...] = field(default_factory=default_corpus)  # the deployment's own corpus files or
                                        # folders (chatterbot-corpus YAML, CSV question,answer); $AVATAR_CORPUS
    comparison: str = "embedding"       # "embedding" (by meaning) or "levenshtein" (ChatterBot's, by spelling)
    min_confidence: float | None = None  # matches scoring less get the fallback; None: 0.6 embedding, 0.5 levenshtein
    deployment_min_confidence: float = 0.45  # by meaning, a deployment corpus match needs only this much
    deployment_margin: float = 0.2      # the deployment's match wins unless a general one scores this much more
    emergency_number: str = "112"       # said digit by digit in urgent_reply
    urgent_similarity: float = 0.55     # cosine to an urgent example that makes a message urgent (when also
                                        # 0.05 closer to it than to every everyday look-alike)
    handover_similarity: float = 0.7    # cosine to a hand-over example that makes a message a hand-over request
    urgent_reply: str = ("This sounds like an emergency. Please call the emergency number, {number}, now, or ask "
                         "someone near you to call it. I am alerting a person to help you. Stay where you are, "
                         "and keep your phone close.")
    handover_reply: str = ("Of course. I am an AI assistant, so I am passing you to a member of our team. "
                           "A person will get back to you as soon as possible.")
    fallback_reply: str = ("I'm sorry, I don't know how to answer that. I can answer questions about our service, "
                           "such as opening hours and how to reach us, and chat about everyday topics. "
                           "To talk to a person, just say that you want to talk to a human.")
    no_words_reply: str = "I can only understand words for now. Could you type your question in a few words?"

    def __post_init__(self) -> None:
        object.__setattr__(self, "database_url", as_database_url(self.database_url))
        try:
            url = make_url(self.database_url)
        except ArgumentError:
            raise ValueError(f"Not a database URL: {self.database_url!r} (give a URL such as "
                             "postgresql+psycopg2://USER@HOST/DB, or an SQLite file's path)") from None
        if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
            raise ValueError("The bot needs an SQLite file (an in-memory database is not shared between threads).")
        if self.max_message_chars < 1 or self.history_turns < 1 or self.max_sessions < 1:
            raise ValueError("max_message_chars, history_turns and max_sessions must be at least 1.")
        if self.comparison not in COMPARISONS:
            raise ValueError(f"comparison must be one of {COMPARISONS}, not {self.comparison!r}.")
        if not 0.0 <= self.confidence_floor <= MATCH_THRESHOLD:
            raise ValueError(f"min_confidence must lie between 0 and {MATCH_THRESHOLD}.")
        if not 0.0 <= self.deployment_min_confidence <= MATCH_THRESHOLD:
            raise ValueError(f"deployment_min_confidence must lie between 0 and {MATCH_THRESHOLD}.")
        if not spoken_digits(self.emergency_number):
            raise ValueError(f"emergency_number must hold digits, not {self.emergency_number!r}.")
        object.__setattr__(self, "corpus", tuple(Path(path) for path in self.corpus))

    @property
    def confidence_floor(self) -> float:
        """min_confidence, or the comparison's default."""
        return DEFAULT_MIN_CONFIDENCE[self.comparison] if self.min_confidence is None else self.min_confidence

    @property
    def answer_floor(self) -> float:
        """The least confidence of any answer given: by meaning, a deployment's own corpus may need less."""
        if self.comparison == "embedding":
            return min(self.confidence_floor, self.deployment_min_confidence)
        return self.confidence_floor

    @property
    def urgent_text(self) -> str:
        """urgent_reply with the emergency number written to be spoken digit by digit."""
        return self.urgent_reply.format(number=spoken_digits(self.emergency_number))

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file the bot lives in, or None for a database server."""
        url = make_url(self.database_url)
        return Path(url.database) if url.get_backend_name() == "sqlite" else None


@dataclass(frozen=True)
class Reply:
    """The bot's reply and what kind it is: "answer", "fallback", "urgent" or "handover"."""

    text: str
    kind: ReplyKind


@dataclass(frozen=True)
class Exchange:
    """One message of a session and the bot's reply to it."""

    message: str
    reply: str


def build_chatbot(settings: BotSettings, encoder: SentenceEncoder | None = None) -> ChatBot:
    """A ChatterBot with the lowercase tagger and one BestMatch adapter that always picks the first candidate,
    comparing by meaning or by spelling (`settings.comparison`)."""
    if settings.sqlite_path is not None:
        settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    by_meaning = settings.comparison == "embedding"
    extra = {}
    if by_meaning:
        encoder = encoder or load_encoder()
        extra["statement_comparison_function"] = lambda language: EmbeddingSimilarity(language, encoder)
    chatbot = ChatBot(
        settings.name,
        database_uri=settings.database_url,
        tagger=LowercaseTagger,          # the default PosLemmaTagger needs a spaCy model we cannot download
        read_only=settings.read_only,
        logic_adapters=[],               # added below, once our search is registered
        **extra,
    )
    load_tags_eagerly(chatbot.storage)
    search_name = "indexed_text_search"
    if settings.read_only:  # the table cannot change, so it can be searched from memory
        if by_meaning:
            search = EmbeddingSearch(chatbot, encoder, floor=settings.confidence_floor,
                                     deployment_floor=settings.deployment_min_confidence,
                                     margin=settings.deployment_margin)
        else:
            search = SnapshotTextSearch(chatbot, stop_at=MATCH_THRESHOLD, floor=settings.confidence_floor)
        chatbot.search_algorithms[search.name] = search
        search_name = search.name
    adapter = EmbeddingMatch if settings.read_only and by_meaning else BestMatch
    chatbot.logic_adapters.append(adapter(
        chatbot,
        search_algorithm_name=search_name,
        maximum_similarity_threshold=MATCH_THRESHOLD,
        response_selection_method=get_first_response,
        default_response=settings.fallback_reply,
    ))
    return chatbot


def load_tags_eagerly(storage) -> None:
    """Fetch the tags of the statements a query returns in one extra query, not one per statement.

    ChatterBot turns every statement it reads into a plain object, tags included; with the default lazy
    relationship that is a query per row, and a common answer has over a hundred rows (BestMatch lists
    every statement with the chosen reply's text before picking the first).
    """
    model = storage.get_model("statement")

    def add_eager_tags(state: ORMExecuteState) -> None:
        if (state.is_select and not state.is_column_load and not state.is_relationship_load
                and any(mapper.class_ is model for mapper in state.all_mappers)):
            state.statement = state.statement.options(selectinload(model.tags))

    event.listen(storage.Session.session_factory, "do_orm_execute", add_eager_tags)


class ChatResponder:
    """`avatar.types.Responder` backed by ChatterBot: one reply per message, a conversation per session."""

    def __init__(self, chatbot: ChatBot, settings: BotSettings, encoder: SentenceEncoder | None = None):
        self.settings = settings
        self._chatbot = chatbot
        self._encoder = encoder or load_encoder()
        self._escalation = Escalation(self._encoder, settings.urgent_similarity, settings.handover_similarity)
        self._lock = threading.Lock()  # ChatterBot keeps per-call state on shared objects: one reply at a time
        self._sessions: OrderedDict[str, deque[Exchange]] = OrderedDict()
        self._closed = False

    @classmethod
    def create(cls, settings: BotSettings | None = None) -> ChatResponder:
        """Open (and at first use, or when a corpus file changed, train) the bot's database and get it ready to
        answer quickly. Raises CorpusError (file, line, problem) for a deployment corpus file that does not fit."""
        settings = settings or BotSettings()
        sqlite_path = settings.sqlite_path
        lock_path = sqlite_path.with_name(sqlite_path.name + ".lock") if sqlite_path is not None else None
        encoder = load_encoder()
        with exclusive(settings.database_url, lock_path):  # one process (instance) trains while others wait
            chatbot = build_chatbot(settings, encoder)
            try:
                if ensure_trained(chatbot, corpus=settings.corpus, show_progress=settings.show_progress):
                    log.info("Bot trained: %d statements in %s", chatbot.storage.count(), settings.database_url)
            except BaseException:
                chatbot.storage.close()
                raise
        responder = cls(chatbot, settings, encoder)
        responder._warm_up()
        return responder

    @property
    def encoder(self) -> SentenceEncoder:
        """The sentence encoder the bot matches and detects with."""
        return self._encoder

    def validate(self, text: str | bytes) -> str:
        """The message normalised (NFC, single spaces, trimmed), or InvalidMessage saying what is wrong."""
        return normalise_message(text, self.settings.max_message_chars)

    def reply(self, text: str | bytes, session_id: str = "default") -> str:
        """The bot's answer to `text` in the given session; raises InvalidMessage for unusable input."""
        return self.respond(text, session_id).text

    def respond(self, text: str | bytes, session_id: str = "default") -> Reply:
        """The bot's reply to `text` and its kind ("answer", "fallback", "urgent", "handover"); raises
        InvalidMessage for unusable input."""
        message = self.validate(text)
        detection = None
        if has_words(message):  # the message's embedding is computed outside the lock, once
            detection = self._escalation.detect(message, self._encoder.vector(message))
        with self._lock:
            if self._closed:
                raise RuntimeError("The responder is closed.")
            history = self._session(session_id)
            if not has_words(message):
                reply = Reply(self.settings.no_words_reply, "fallback")
            elif detection is not None and detection.kind == "urgent":
                log.warning("Urgent message in conversation %s (similarity %.2f, keyword %r)",
                            conversation_label(session_id), detection.similarity, detection.keyword)
                reply = Reply(self.settings.urgent_text, "urgent")
            elif detection is not None:  # a hand-over: the corpus's answer to the plain request, if it has one
                answer = self._answer(HANDOVER_EXAMPLES[0], session_id, history)
                reply = Reply(answer or self.settings.handover_reply, "handover")
            else:
                answer = self._answer(message, session_id, history)
                reply = Reply(answer, "answer") if answer else Reply(self.settings.fallback_reply, "fallback")
            history.append(Exchange(message, reply.text))
        return reply

    def history(self, session_id: str = "default") -> tuple[Exchange, ...]:
        """The exchanges remembered for a session, oldest first."""
        with self._lock:
            return tuple(self._sessions.get(session_id, ()))

    def end_session(self, session_id: str) -> None:
        """Forget a session (e.g. when its peer goes away)."""
        with self._lock:
            self._sessions.pop(session_id, None)

    def close(self) -> None:
        """Release the database connections; later replies raise RuntimeError."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._sessions.clear()
                self._chatbot.storage.close()

    def __enter__(self) -> ChatResponder:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _session(self, session_id: str) -> deque[Exchange]:
        history = self._sessions.get(session_id)
        if history is None:
            history = self._sessions[session_id] = deque(maxlen=self.settings.history_turns)
            while len(self._sessions) > self.settings.max_sessions:
                self._sessions.popitem(last=False)
        self._sessions.move_to_end(session_id)
        return history

    def _answer(self, message: str, session_id: str, history: deque[Exchange]) -> str | None:
        """The corpus's answer, or None when nothing matches with at least the settings' confidence."""
        response = self._chatbot.get_response(
            message,
            conversation=conversation_label(session_id),
            in_response_to=history[-1].reply if history else None,
            additional_response_selection_parameters={
                "exclude_text": recent_repeated_replies(history),
                "order_by": ["id"],  # get_first_response then means the earliest trained answer
            },
        )
        if response.confidence < self.settings.answer_floor:  # the search applied the floor of each corpus
            return None
        return response.text

    def _warm_up(self) -> None:
        """Load the search snapshot, spaCy and SQLAlchemy's compiled queries now, not on a customer's message."""
        for search in self._chatbot.search_algorithms.values():
            if isinstance(search, SnapshotTextSearch):
                search.snapshot()
            elif isinstance(search, EmbeddingSearch):
                search.index()
        if not self.settings.read_only:
            return  # a learning bot would learn the warm-up messages
        for _ in range(2):  # the first message of a session and a later one take different query paths
            self.reply("Hello", session_id="\0warm-up")
        self.end_session("\0warm-up")


def conversation_label(session_id: str) -> str:
    """ChatterBot's conversation id for a session: fits its 32-character column, never clashes with 'training'."""
    return "s:" + hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()[:30]


def recent_repeated_replies(
    history: deque[Exchange], sample: int = 10, threshold: int = 3, quantity: int = 3
) -> list[str]:
    """ChatterBot's `filters.get_recent_repeated_responses`, over the session's memory instead of the database:
    texts said at least `threshold` times among the last `sample` statements (up to `quantity` of them)."""
    statements = [text for exchange in history for text in (exchange.message, exchange.reply)][-sample:]
    return [text for text, count in Counter(statements).most_common(quantity) if count >= threshold]
