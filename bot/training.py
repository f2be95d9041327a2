"""Training the bot once: chatterbot-corpus English, then our own corpus on top, marked done in the database.

The marker is the corpus fingerprint (package versions and the bytes of every corpus file) kept in a small
table of our own beside ChatterBot's; a restart with the same corpus finds it and skips training, a changed
corpus retrains from an emptied statement table.
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

from chatterbot import ChatBot
from chatterbot.corpus import list_corpus_files
from chatterbot.trainers import ChatterBotCorpusTrainer
from sqlalchemy import Column, MetaData, String, Table, select
from sqlalchemy.engine import Engine
from tqdm import tqdm

ENGLISH_CORPUS = "chatterbot.corpus.english"
OWN_CORPUS_DIR = Path(__file__).resolve().parent / "corpus"
MARKER_KEY = "corpus_fingerprint"

_metadata = MetaData()
_marker_table = Table(
    "avatar_bot_training", _metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(128), nullable=False),
)

log = logging.getLogger(__name__)


def own_corpus_files() -> list[Path]:
    """Our corpus files (bot/corpus/*.yml), trained after the English corpus in name order."""
    return sorted(OWN_CORPUS_DIR.glob("*.yml"))


def corpus_fingerprint() -> str:
    """A short hash of everything training reads: ChatterBot and corpus versions and each corpus file."""
    digest = hashlib.sha256()
    digest.update(f"chatterbot {version('chatterbot')} corpus {version('chatterbot-corpus')}".encode())
    for path in [Path(p) for p in list_corpus_files(ENGLISH_CORPUS)] + own_corpus_files():
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:32]


def trained_fingerprint(engine: Engine) -> str | None:
    """The fingerprint of the corpus the database was trained on, or None if it never finished training."""
    _metadata.create_all(engine, tables=[_marker_table])
    with engine.connect() as connection:
        return connection.execute(
            select(_marker_table.c.value).where(_marker_table.c.key == MARKER_KEY)
        ).scalar_one_or_none()


@contextmanager
def exclusive(lock_path: Path | None) -> Iterator[None]:
    """Hold an exclusive lock on `lock_path` (no-op for None): one process at a time creates and trains a database."""
    if lock_path is None:
        yield
        return
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def ensure_trained(chatbot: ChatBot, show_progress: bool = True) -> bool:
    """Train `chatbot` unless its database already holds this corpus; return whether it trained now.
    Processes that may open the same new database at once hold `exclusive(...)` around opening and this."""
    engine = chatbot.storage.engine
    fingerprint = corpus_fingerprint()
    if trained_fingerprint(engine) == fingerprint:
        return False
    message = (f"Training the bot once: chatterbot-corpus English, then {len(own_corpus_files())} "
               "corpus file(s) of our own")
    log.info(message)
    if show_progress:
        tqdm.write(message)
    chatbot.storage.drop()  # left-overs of an interrupted run or of an older corpus
    trainer = ChatterBotCorpusTrainer(chatbot, show_training_progress=show_progress)
    trainer.train(ENGLISH_CORPUS)
    trainer.train(*[str(path) for path in own_corpus_files()])

    with engine.begin() as connection:
        connection.execute(_marker_table.delete().where(_marker_table.c.key == MARKER_KEY))
        connection.execute(_marker_table.insert().values(key=MARKER_KEY, value=fingerprint))
    return True
