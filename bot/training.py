"""Training the bot once: chatterbot-corpus English, our own corpus on top, then a deployment's corpus
(BotSettings.corpus), then the embeddings of every prompt; marked done in the database.

The marker is the corpus fingerprint (package versions, the embedding model, and the bytes of every corpus
file) kept in a small table of our own beside ChatterBot's; a restart with the same corpus finds it and
skips training, a changed corpus retrains from an emptied statement table. Every file is read and checked
(bot/corpora.py) before anything is trained, so a malformed deployment file is refused with its line.
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

from chatterbot import ChatBot
from chatterbot.conversation import Statement
from chatterbot.corpus import list_corpus_files as list_chatterbot_corpus
from sqlalchemy import Column, MetaData, String, Table, create_engine, make_url, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool
from tqdm import tqdm

from bot.corpora import CorpusFile, list_corpus_files, read_corpus_file
from bot.embedding import load_encoder, model_description
from bot.semantic import (DEPLOYMENT_CONVERSATION, clear_prompt_embeddings, prompt_texts,
                          store_prompt_embeddings)

ENGLISH_CORPUS = "chatterbot.corpus.english"
OWN_CORPUS_DIR = Path(__file__).resolve().parent / "corpus"
MARKER_KEY = "corpus_fingerprint"
TRAINING_VERSION = "2"  # how files become statements (checks, speakability filter, embeddings); bump on change
GENERAL_CONVERSATION = "training"  # what ChatterBot's own corpus trainer writes

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


def english_corpus_files() -> list[Path]:
    return [Path(p) for p in list_chatterbot_corpus(ENGLISH_CORPUS)]


def corpus_fingerprint(corpus: Sequence[Path | str] = ()) -> str:
    """A short hash of everything training reads: ChatterBot and corpus versions, the embedding model, the
    training procedure and each corpus file, the deployment's `corpus` (files or folders) included."""
    digest = hashlib.sha256()
    digest.update(f"chatterbot {version('chatterbot')} corpus {version('chatterbot-corpus')} "
                  f"training {TRAINING_VERSION} model {model_description()}".encode())
    for path in english_corpus_files() + own_corpus_files():
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    for path in list_corpus_files(corpus):
        digest.update(b"deployment\0" + path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:32]


def trained_fingerprint(engine: Engine) -> str | None:
    """The fingerprint of the corpus the database was trained on, or None if it never finished training."""
    _metadata.create_all(engine, tables=[_marker_table])
    with engine.connect() as connection:
        return connection.execute(
            select(_marker_table.c.value).where(_marker_table.c.key == MARKER_KEY)
        ).scalar_one_or_none()


TRAINING_LOCK_KEY = int.from_bytes(hashlib.sha256(b"avatar bot training").digest()[:8], "big", signed=True)


@contextmanager
def exclusive(database_url: str, lock_path: Path | None = None) -> Iterator[None]:
    """One process at a time creates and trains the bot's database, on one machine or several.

    An SQLite file (`lock_path` beside it): an exclusive file lock. PostgreSQL: a session-level advisory lock
    on the server itself, so that instances on different machines sharing one database wait for each other.
    Other database servers: no lock (start one instance first and let it train).
    """
    if lock_path is not None:
        with _file_lock(lock_path):
            yield
    elif make_url(database_url).get_backend_name() == "postgresql":
        with _advisory_lock(database_url):
            yield
    else:
        log.warning("No training lock for %s: start one instance first and let it train the bot",
                    make_url(database_url).get_backend_name())
        yield


@contextmanager
def _file_lock(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


@contextmanager
def _advisory_lock(database_url: str) -> Iterator[None]:
    """pg_advisory_lock on a connection of its own, held until the block ends (or the connection drops: the
    server then releases it, so a killed instance never leaves the lock behind)."""
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            key = {"key": TRAINING_LOCK_KEY}
            if not connection.execute(text("SELECT pg_try_advisory_lock(:key)"), key).scalar():
                log.info("Waiting for another instance to finish preparing the bot's database")
                connection.execute(text("SELECT pg_advisory_lock(:key)"), key)
            connection.commit()
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), key)
                connection.commit()
    finally:
        engine.dispose()


def ensure_trained(chatbot: ChatBot, corpus: Sequence[Path | str] = (), show_progress: bool = True) -> bool:
    """Train `chatbot` unless its database already holds this corpus; return whether it trained now.
    Raises CorpusError for a deployment corpus file that does not fit, before changing anything.
    Processes that may open the same new database at once hold `exclusive(...)` around opening and this."""
    engine = chatbot.storage.engine
    fingerprint = corpus_fingerprint(corpus)
    if trained_fingerprint(engine) == fingerprint:
        return False
    general = [read_corpus_file(path, strict=False) for path in english_corpus_files() + own_corpus_files()]
    deployment = [read_corpus_file(path) for path in list_corpus_files(corpus)]
    message = (f"Training the bot once: chatterbot-corpus English, {len(own_corpus_files())} corpus file(s) of "
               f"our own and {len(deployment)} of the deployment, then the embeddings of their prompts")
    log.info(message)
    if show_progress:
        tqdm.write(message)
    dropped = sum((file.dropped for file in general + deployment), Counter())
    if dropped:
        log.info("Left out of training (statements per reason): %s", dict(dropped))

    chatbot.storage.drop()  # left-overs of an interrupted run or of an older corpus
    clear_prompt_embeddings(engine)
    labelled = [(file, GENERAL_CONVERSATION) for file in general]
    labelled += [(file, DEPLOYMENT_CONVERSATION) for file in deployment]
    for file, label in tqdm(labelled, desc="Training corpus", disable=not show_progress):
        train_conversations(chatbot, file, label)
    texts = prompt_texts(chatbot.storage)
    with tqdm(total=len(texts), desc="Embedding prompts", disable=not show_progress) as bar:
        store_prompt_embeddings(engine, load_encoder(), texts, progress=bar.update)

    with engine.begin() as connection:
        connection.execute(_marker_table.delete().where(_marker_table.c.key == MARKER_KEY))
        connection.execute(_marker_table.insert().values(key=MARKER_KEY, value=fingerprint))
    return True


def train_conversations(chatbot: ChatBot, file: CorpusFile, conversation: str) -> None:
    """Store one file's conversations the way ChatterBot's corpus trainer does (each statement a reply to the
    one before, tagged with the file's categories, indexed by the bot's tagger), under `conversation`."""
    texts = [text for statements in file.conversations for text in statements]
    for preprocessor in chatbot.preprocessors:
        texts = [preprocessor(Statement(text=text)).text for text in texts]
    search_texts = iter(chatbot.tagger.get_text_index_string(texts) if texts else [])
    texts_left = iter(texts)
    statements = []
    for length in (len(statements_) for statements_ in file.conversations):
        previous_text, previous_search_text = None, ""
        for _ in range(length):
            text, search_text = next(texts_left), next(search_texts)
            statement = Statement(text=text, search_text=search_text, in_response_to=previous_text,
                                  search_in_response_to=previous_search_text, conversation=conversation)
            statement.add_tags(*file.categories)
            previous_text, previous_search_text = text, search_text
            statements.append(statement)
    if statements:
        chatbot.storage.create_many(statements)
