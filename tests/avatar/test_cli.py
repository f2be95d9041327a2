"""The `avatar` command as a user runs it: a real subprocess with the real bot, voice and avatar."""
import shutil
import subprocess
import sys
from pathlib import Path

import av
import pytest

REPO = Path(__file__).resolve().parents[2]
AVATAR = [sys.executable, "-m", "avatar.cli"]


@pytest.fixture(scope="module")
def db_url(tmp_path_factory, responder) -> str:
    """A private copy of a trained bot database (the `responder` fixture trains or copies one)."""
    from bot.training import corpus_fingerprint

    path = tmp_path_factory.mktemp("clidb") / "bot.sqlite3"
    cached = REPO / "var" / "cache" / "bot" / f"trained-{corpus_fingerprint()}.sqlite3"
    if cached.is_file():
        shutil.copyfile(cached, path)
    return f"sqlite:///{path}"


def run(args, **kwargs):
    return subprocess.run(AVATAR + args, capture_output=True, text=True, timeout=300, cwd=REPO, **kwargs)


def test_help_lists_the_commands():
    out = run(["--help"]).stdout
    for command in ("serve", "chat", "export", "verify", "build", "inspect", "synth", "swap"):
        assert command in out


def test_terminal_chat_answers_each_line(db_url):
    result = run(["chat", "--db", db_url], input="What is AI?\nHello\n")
    assert result.returncode == 0, result.stderr
    assert "Artificial Intelligence is the branch of engineering" in result.stdout
    assert result.stdout.count("Bot:") == 2


def test_terminal_chat_takes_the_database_as_a_path(db_url):
    result = run(["chat", "--db", db_url.removeprefix("sqlite:///")], input="What is AI?\n")
    assert result.returncode == 0, result.stderr
    assert "Artificial Intelligence is the branch of engineering" in result.stdout


def test_export_writes_video_and_transcript(tmp_path, db_url):
    dialogue = tmp_path / "d.txt"
    dialogue.write_text("Human: What is AI?\n")
    out = tmp_path / "out.mp4"
    db_path = db_url.removeprefix("sqlite:///")                      # --db takes a path as well as a URL
    result = run(["export", "--dialogue", str(dialogue), "-o", str(out), "--captions", "--db", db_path])
    assert result.returncode == 0, result.stderr
    assert out.with_suffix(".vtt").read_text().startswith("WEBVTT")
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "h264" and c.streams.audio[0].codec_context.name == "aac"


def test_export_errors_are_clear(tmp_path):
    result = run(["export", "--dialogue", str(tmp_path / "missing.txt"), "-o", str(tmp_path / "x.mp4")])
    assert result.returncode == 2
    assert "dialogue file not found" in result.stderr and "Traceback" not in result.stderr


def test_serve_stops_with_the_corpus_error_when_its_bot_cannot_load(tmp_path):
    """The service listens before the bot is loaded (for /health and /ready); a bot that cannot load still
    ends `avatar serve` with the error, rather than a process that is up and can never answer."""
    corpus = tmp_path / "faq.yml"
    corpus.write_text("categories:\n- faq\nconversations:\n- - What are your hours?\n")
    served = run(["serve", "--corpus", str(corpus), "--db", str(tmp_path / "bot.sqlite3"), "--port", "0"])
    assert served.returncode == 2, served.stderr[-2000:]
    assert f"{corpus}, line 4: a conversation needs a statement and its reply" in served.stderr
