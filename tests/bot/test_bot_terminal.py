"""The terminal chat: one reply per line, reasons for refused lines, ends at quit or end of input."""
import io

from bot.responder import ChatResponder
from bot.terminal import chat_loop, run_terminal_chat


def test_terminal_chat_over_streams(responder: ChatResponder):
    stdin = io.StringIO("What is AI?\n\n" + "x" * 3000 + "\n\U0001f600\nquit\nWhat is AI?\n")
    stdout = io.StringIO()
    replies = run_terminal_chat(responder, stdin, stdout, bot_name="Avatar")
    shown = stdout.getvalue()
    assert replies == 2
    assert "talking" in shown or "chatting with an AI" in shown
    assert "Avatar: Artificial Intelligence is the branch of engineering" in shown
    assert "(The message is too long (3,000 characters); the limit is 2,000.)" in shown
    assert f"Avatar: {responder.settings.no_words_reply}" in shown
    assert shown.count("Artificial Intelligence") == 1  # nothing answered after "quit"


def test_chat_loop_ends_at_end_of_input(responder: ChatResponder):
    lines = iter(["Hello"])
    shown = []

    def read(prompt: str) -> str:
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    assert chat_loop(responder, read, shown.append, session_id="loop") == 1
    assert shown == [f"Bot: {responder.history('loop')[0].reply}"]
