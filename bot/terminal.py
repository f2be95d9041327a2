"""The bot in a terminal: read a line, print the reply, until end of input or a quit word."""
from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

from avatar.types import Responder
from bot.messages import InvalidMessage

QUIT_WORDS = frozenset({"quit", "exit", "bye!", "/quit"})
BANNER = "You are chatting with an AI assistant. Type 'quit' or press Ctrl-D to leave."


def chat_loop(
    responder: Responder,
    input_fn: Callable[[str], str],
    output_fn: Callable[[str], None],
    session_id: str = "terminal",
    bot_name: str = "Bot",
) -> int:
    """Run one conversation: `input_fn(prompt)` gives a line (EOFError ends it), `output_fn` shows a line.
    Unusable messages are answered with the reason instead of ending the chat. Returns the replies given."""
    replies = 0
    while True:
        try:
            line = input_fn("You: ")
        except (EOFError, KeyboardInterrupt):
            break
        if line.strip().lower() in QUIT_WORDS:
            break
        if not line.strip():
            continue
        try:
            answer = responder.reply(line, session_id)
        except InvalidMessage as error:
            output_fn(f"({error})")
            continue
        output_fn(f"{bot_name}: {answer}")
        replies += 1
    return replies


def run_terminal_chat(responder: Responder, stdin: TextIO, stdout: TextIO, bot_name: str = "Bot") -> int:
    """`chat_loop` over text streams (the terminal, or pipes in tests); returns the replies given."""

    def read(prompt: str) -> str:
        stdout.write(prompt)
        stdout.flush()
        line = stdin.readline()
        if not line:
            stdout.write("\n")
            raise EOFError
        return line.rstrip("\n")

    def write(text: str) -> None:
        stdout.write(text + "\n")
        stdout.flush()

    write(BANNER)
    return chat_loop(responder, read, write, bot_name=bot_name)
