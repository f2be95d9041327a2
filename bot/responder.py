"""The avatar's dialogue engine: ChatterBot over chatterbot-corpus English plus our customer-service corpus.

Replies are read-only (a conversation never changes the database, so one customer cannot retrain the bot
that every customer shares), deterministic (ChatterBot's `get_first_response` over an id-ordered candidate
list) and safe to call from worker threads. Each session keeps a short in-memory history, used the way
ChatterBot uses a stored conversation: the previous reply is what a message responds to, and replies the
session keeps repeating are skipped.

Matches scoring below `BotSettings.min_confidence` (ChatterBot's Levenshtein similarity) get the fallback
reply, which offers a human, instead of the loosely related statement ChatterBot would return.
Messages with no letters or digits at all (emoji, punctuation) get `BotSettings.no_words_reply` rather than
an error: they are valid text, just nothing the corpus can match.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path

from chatterbot import ChatBot
from chatterbot.logic import BestMatch
from chatterbot.response_selection import get_first_response
from chatterbot.tagging import LowercaseTagger
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import ORMExecuteState, selectinload

from bot.messages import InvalidMessage, has_words, normalise_message
from bot.search import SnapshotTextSearch
from bot.training import ensure_trained, exclusive

__all__ = ["BotSettings", "ChatResponder", "Exchange", "InvalidMessage", "default_database_url"]

REPO_ROOT = Path(__file__).resolve().parents[1]
MATCH_THRESHOLD = 0.95  # BestMatch's maximum_similarity_threshold (ChatterBot's default): stop at a match this close
DATABASE_ENV = "AVATAR_BOT_DB"

log = logging.getLogger(__name__)


def default_database_url() -> str:
    """$AVATAR_BOT_DB (a database URL, or a path to an SQLite file), else var/bot.sqlite3 in the repository."""
    configured = os.environ.get(DATABASE_ENV, "").strip()
    if "://" in configured:
        return configured
    path = Path(configured).expanduser() if configured else REPO_ROOT / "var" / "bot.sqlite3"
    return f"sqlite:///{path.resolve()}"


@dataclass(frozen=True)
class BotSettings:
    """How the bot is stored, named and bounded."""

    database_url: str = field(default_factory=default_database_url)  # SQLAlchemy URL; PostgreSQL works as is
    name: str = "Avatar"
    max_message_chars: int = 2000       # longer messages are refused with InvalidMessage
    read_only: bool = True              # False lets conversations train the bot (ChatterBot's learning)
    show_progress: bool = True          # progress bars while training at first use
    history_turns: int = 10             # exchanges remembered per session
    max_sessions: int = 1000            # beyond this the least recently used session is forgotten
    min_confidence: float = 0.5         # matches scoring less get fallback_reply (0 keeps ChatterBot's answer)
    fallback_reply: str = "I'm sorry, I don't know how to answer that yet. You can ask for a human at any time."
    no_words_reply: str = "I can only understand words for now. Could you type your question in a few words?"

    def __post_init__(self) -> None:
        try:
            url = make_url(self.database_url)
        except ArgumentError:
            raise ValueError(f"Not a database URL: {self.database_url!r}") from None
        if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
            raise ValueError("The bot needs an SQLite file (an in-memory database is not shared between threads).")
        if self.max_message_chars < 1 or self.history_turns < 1 or self.max_sessions < 1:
            raise ValueError("max_message_chars, history_turns and max_sessions must be at least 1.")
        if not 0.0 <= self.min_confidence <= MATCH_THRESHOLD:
            raise ValueError(f"min_confidence must lie between 0 and {MATCH_THRESHOLD}.")

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file the bot lives in, or None for a database server."""
        url = make_url(self.database_url)
        return Path(url.database) if url.get_backend_name() == "sqlite" else None


@dataclass(frozen=True)
class Exchange:
    """One message of a session and the bot's reply to it."""

    message: str
    reply: str


def build_chatbot(settings: BotSettings) -> ChatBot:
    """A ChatterBot with the lowercase tagger and one BestMatch adapter that always picks the first candidate."""
    if settings.sqlite_path is not None:
        settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    chatbot = ChatBot(
        settings.name,
        database_uri=settings.database_url,
        tagger=LowercaseTagger,          # the default PosLemmaTagger needs a spaCy model we cannot download
        read_only=settings.read_only,
        logic_adapters=[],               # added below, once our search is registered
    )
    load_tags_eagerly(chatbot.storage)
    search_name = "indexed_text_search"
    if settings.read_only:  # the table cannot change, so it can be searched from memory
        search = SnapshotTextSearch(chatbot, stop_at=MATCH_THRESHOLD, floor=settings.min_confidence)
        chatbot.search_algorithms[search.name] = search
        search_name = search.name
    chatbot.logic_adapters.append(BestMatch(
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

    def __init__(self, chatbot: ChatBot, settings: BotSettings):
        self.settings = settings
        self._chatbot = chatbot
        self._lock = threading.Lock()  # ChatterBot keeps per-call state on shared objects: one reply at a time
        self._sessions: OrderedDict[str, deque[Exchange]] = OrderedDict()
        self._closed = False

    @classmethod
    def create(cls, settings: BotSettings | None = None) -> ChatResponder:
        """Open (and at first use, train) the bot's database and get it ready to answer quickly."""
        settings = settings or BotSettings()
        sqlite_path = settings.sqlite_path
        lock_path = sqlite_path.with_name(sqlite_path.name + ".lock") if sqlite_path is not None else None
        with exclusive(lock_path):  # a new database is created and trained by one process while others wait
            chatbot = build_chatbot(settings)
            if ensure_trained(chatbot, show_progress=settings.show_progress):
                log.info("Bot trained: %d statements in %s", chatbot.storage.count(), settings.database_url)
        responder = cls(chatbot, settings)
        responder._warm_up()
        return responder

    def validate(self, text: str | bytes) -> str:
        """The message normalised (NFC, single spaces, trimmed), or InvalidMessage saying what is wrong."""
        return normalise_message(text, self.settings.max_message_chars)

    def reply(self, text: str | bytes, session_id: str = "default") -> str:
        """The bot's answer to `text` in the given session; raises InvalidMessage for unusable input."""
        message = self.validate(text)
        with self._lock:
            if self._closed:
                raise RuntimeError("The responder is closed.")
            history = self._session(session_id)
            if has_words(message):
                answer = self._answer(message, session_id, history)
            else:
                answer = self.settings.no_words_reply
            history.append(Exchange(message, answer))
        return answer

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

    def _answer(self, message: str, session_id: str, history: deque[Exchange]) -> str:
        response = self._chatbot.get_response(
            message,
            conversation=conversation_label(session_id),
            in_response_to=history[-1].reply if history else None,
            additional_response_selection_parameters={
                "exclude_text": recent_repeated_replies(history),
                "order_by": ["id"],  # get_first_response then means the earliest trained answer
            },
        )
        if response.confidence < self.settings.min_confidence:
            return self.settings.fallback_reply
        return response.text

    def _warm_up(self) -> None:
        """Load the search snapshot, spaCy and SQLAlchemy's compiled queries now, not on a customer's message."""
        for search in self._chatbot.search_algorithms.values():
            if isinstance(search, SnapshotTextSearch):
                search.snapshot()
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
