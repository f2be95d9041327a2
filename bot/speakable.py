"""What the avatar must not say aloud: code, markup, links and emoji read out character by character.

Training drops every corpus statement that `unspeakable_reason` names a reason for (and the rest of its
conversation, whose statements answer it), so no reply needs rewriting at run time.
"""
from __future__ import annotations

import re
import unicodedata

_CHECKS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("code", re.compile(r"`|^\s{4,}\S.*\n|\b(def|return|import|printf?|function|var|const)\b[^.?!]*[(=;]|;\s*$|[=!<>]=|\+=|=>|::",
                        re.MULTILINE)),
    ("link", re.compile(r"https?:|\bwww\.|\b[\w.-]+\.(com|org|net|io|dev)(/|\b)|\b[\w.+-]+@[\w-]+\.\w+", re.IGNORECASE)),
    ("markup", re.compile(r"[<>{}\[\]|\\]|^\s*(#|[-*+] |\d+\. )|\*\*|__|~~", re.MULTILINE)),
    ("emoji name", re.compile(r":[a-z0-9_+-]+:", re.IGNORECASE)),
)


def unspeakable_reason(text: str) -> str | None:
    """Why `text` should not be spoken ('code', 'link', 'markup', 'emoji name' or 'emoji'), or None."""
    for reason, pattern in _CHECKS:
        if pattern.search(text):
            return reason
    if any(unicodedata.category(ch) == "So" for ch in text):  # pictographs: speech engines read their names
        return "emoji"
    return None
