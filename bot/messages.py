"""Checking and normalising a user's message before the bot sees it.

A message the bot cannot use (empty, too long, not text) raises `InvalidMessage`, whose text is written for
the user; the web server turns it into a 4xx answer and the terminal chat prints it.
"""
from __future__ import annotations

import unicodedata


class InvalidMessage(ValueError):
    """A message the bot cannot answer; str(error) is a short explanation meant for the user."""


def normalise_message(message: str | bytes, max_chars: int) -> str:
    """Return the message as NFC text on one line with single spaces, or raise InvalidMessage."""
    if isinstance(message, (bytes, bytearray)):
        try:
            message = bytes(message).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidMessage("The message is not valid UTF-8 text.") from None
    if not isinstance(message, str):
        raise InvalidMessage(f"A message must be text, not {type(message).__name__}.")
    try:
        message.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: a str that no UTF-8 text can hold
        raise InvalidMessage("The message contains characters that are not valid text.") from None

    text = unicodedata.normalize("NFC", message)
    # Control characters (NUL, escape, ...) become spaces; format characters such as the emoji zero-width
    # joiner are kept.
    text = "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in text)
    text = " ".join(text.split())
    if not text:
        raise InvalidMessage("The message is empty: please type something.")
    if len(text) > max_chars:
        raise InvalidMessage(f"The message is too long ({len(text):,} characters); the limit is {max_chars:,}.")
    return text


def has_words(text: str) -> bool:
    """Whether the text holds at least one letter or digit (emoji and punctuation alone do not count)."""
    return any(ch.isalnum() for ch in text)
