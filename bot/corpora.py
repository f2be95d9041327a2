"""Reading corpus files: chatterbot-corpus YAML (`categories`, `conversations`) and CSV `question,answer` rows.

A file that does not fit is refused with a `CorpusError` naming the file, the line and the problem, before
anything is trained. Statements the avatar could not say aloud (bot/speakable.py) are dropped here, with the
rest of their conversation, and counted by reason.
"""
from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bot.speakable import unspeakable_reason

CORPUS_SUFFIXES = (".yml", ".yaml", ".csv")


class CorpusError(ValueError):
    """A corpus file that cannot be trained; str(error) says which file, which line and what is wrong."""

    def __init__(self, path: Path, line: int | None, problem: str):
        self.path, self.line, self.problem = path, line, problem
        where = f"{path}, line {line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class CorpusFile:
    """One file's conversations (each a list of statements, every one a reply to the one before)."""

    path: Path
    categories: tuple[str, ...]
    conversations: tuple[tuple[str, ...], ...]
    dropped: Counter = field(default_factory=Counter, compare=False)  # unspeakable statements per reason


def list_corpus_files(paths: Iterable[Path | str]) -> list[Path]:
    """The corpus files named by `paths` (files, or folders searched for .yml/.yaml/.csv), in that order."""
    found: list[Path] = []
    for given in paths:
        path = Path(given).expanduser()
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in CORPUS_SUFFIXES)
            if not inside:
                raise CorpusError(path, None, "the folder holds no .yml, .yaml or .csv corpus file")
            found += inside
        elif path.is_file():
            if path.suffix.lower() not in CORPUS_SUFFIXES:
                raise CorpusError(path, None, "a corpus file must end in .yml, .yaml or .csv")
            found.append(path)
        else:
            raise CorpusError(path, None, "no such file or folder")
    return found


def read_corpus_file(path: Path, strict: bool = True) -> CorpusFile:
    """Read and check one corpus file; its unspeakable statements are already dropped. Not `strict` (for the
    bundled chatterbot-corpus, which has a stray line): malformed conversations are skipped and counted."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        line = path.read_bytes()[:error.start].count(b"\n") + 1
        raise CorpusError(path, line, "not UTF-8 text") from None
    skipped = 0
    if path.suffix.lower() == ".csv":
        categories, conversations = parse_csv(path, text)
    else:
        categories, conversations, skipped = parse_yaml(path, text, strict)
    kept, dropped = speakable_only(conversations)
    if skipped:
        dropped["malformed"] += skipped
    return CorpusFile(path, categories, kept, dropped)


def parse_yaml(path: Path, text: str, strict: bool = True) -> tuple[tuple[str, ...], list[tuple[str, ...]], int]:
    """chatterbot-corpus YAML, read as nodes so that every problem has a line. Statements are taken as
    written (`- No` is the text 'No', not YAML's false). Not `strict`: conversations that do not fit are
    skipped and counted (the third value) instead of refusing the file."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        raise CorpusError(path, mark.line + 1 if mark else None, f"not valid YAML: {error.problem}") from None
    if not isinstance(root, yaml.MappingNode):
        raise CorpusError(path, _line(root), "expected a mapping with 'conversations' (and optional 'categories')")
    sections = {key.value: value for key, value in root.value if isinstance(key, yaml.ScalarNode)}
    for key, _ in root.value:
        if not isinstance(key, yaml.ScalarNode) or key.value not in ("categories", "conversations"):
            raise CorpusError(path, _line(key), f"unknown key {getattr(key, 'value', key)!r} "
                                                "(expected 'categories' and 'conversations')")
    categories: tuple[str, ...] = ()
    if "categories" in sections:
        node = sections["categories"]
        if not isinstance(node, yaml.SequenceNode) or not all(_is_text(item) for item in node.value):
            raise CorpusError(path, _line(node), "'categories' must be a list of names")
        categories = tuple(item.value for item in node.value)
    if "conversations" not in sections:
        raise CorpusError(path, _line(root), "no 'conversations' list")
    node = sections["conversations"]
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        raise CorpusError(path, _line(node), "'conversations' must be a non-empty list of conversations")
    conversations, skipped = [], 0
    for conversation in node.value:
        try:
            conversations.append(conversation_statements(path, conversation))
        except CorpusError:
            if strict:
                raise
            skipped += 1
    return categories, conversations, skipped


def conversation_statements(path: Path, conversation: yaml.Node) -> tuple[str, ...]:
    """The statements of one conversation node, or CorpusError with its line."""
    if not isinstance(conversation, yaml.SequenceNode):
        raise CorpusError(path, _line(conversation), "a conversation must be a list of statements "
                                                     "('- - question' then '  - answer')")
    if len(conversation.value) < 2:
        raise CorpusError(path, _line(conversation), "a conversation needs a statement and its reply")
    statements = []
    for statement in conversation.value:
        if not isinstance(statement, yaml.ScalarNode):
            raise CorpusError(path, _line(statement), "a statement must be text, not a list or mapping")
        if not statement.value.strip():
            raise CorpusError(path, _line(statement), "empty statement")
        statements.append(statement.value)
    return tuple(statements)


def parse_csv(path: Path, text: str) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """Rows of `question,answer` (an optional header row of exactly those names); the file's stem is its
    category."""
    reader = csv.reader(io.StringIO(text, newline=""))
    conversations = []
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if not conversations and [cell.strip().lower() for cell in row] == ["question", "answer"]:
                continue
            if len(row) != 2:
                raise CorpusError(path, reader.line_num, f"expected 2 columns (question,answer), found {len(row)}; "
                                                         "quote a text that holds a comma")
            question, answer = (cell.strip() for cell in row)
            if not question or not answer:
                raise CorpusError(path, reader.line_num, "empty question or answer")
            conversations.append((question, answer))
    except csv.Error as error:
        raise CorpusError(path, reader.line_num, f"not valid CSV: {error}") from None
    if not conversations:
        raise CorpusError(path, None, "no question,answer rows")
    return (path.stem,), conversations


def speakable_only(conversations: Sequence[tuple[str, ...]]) -> tuple[tuple[tuple[str, ...], ...], Counter]:
    """The conversations cut before their first statement that could not be said aloud (a conversation left
    without a reply goes whole), and how many statements were dropped per reason."""
    kept, dropped = [], Counter()
    for conversation in conversations:
        for index, statement in enumerate(conversation):
            reason = unspeakable_reason(statement)
            if reason is not None:
                dropped[reason] += len(conversation) - index
                if index >= 2:
                    kept.append(conversation[:index])
                elif index == 1:
                    dropped[reason] += 1  # the question is left with no reply
                break
        else:
            kept.append(conversation)
    return tuple(kept), dropped


def _is_text(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and bool(node.value.strip())


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1
