"""`python -m bot`: chat with the bot in the terminal (trains it first if its database is new)."""
from __future__ import annotations

import sys

from bot.responder import BotSettings, ChatResponder
from bot.terminal import run_terminal_chat


def main() -> int:
    settings = BotSettings()
    with ChatResponder.create(settings) as responder:
        run_terminal_chat(responder, sys.stdin, sys.stdout, bot_name=settings.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
