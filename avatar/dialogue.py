"""Dialogue files: plain text, one human line per line; a leading "Human:" is allowed and ignored."""
from __future__ import annotations

import re
from pathlib import Path

_PREFIX = re.compile(r"^\s*human\s*:\s*", re.IGNORECASE)


class DialogueError(ValueError):
    """The dialogue file cannot be used."""


def parse_dialogue(text: str) -> list[str]:
    """The human lines of a dialogue, in order; blank lines and `#` comments are skipped."""
    lines = []
    for raw in text.splitlines():
        line = _PREFIX.sub("", raw).strip()
        if line and not raw.lstrip().startswith("#"):
            lines.append(line)
    return lines


def read_dialogue(path: Path) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DialogueError(f"dialogue file not found: {path}") from None
    except UnicodeDecodeError:
        raise DialogueError(f"dialogue file is not UTF-8 text: {path}") from None
    lines = parse_dialogue(text)
    if not lines:
        raise DialogueError(f"dialogue file has no lines to say: {path}")
    return lines
