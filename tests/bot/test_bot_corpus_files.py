"""A deployment's own corpus: YAML or CSV, refused with file and line when malformed, trained again only
when a file changes."""
from pathlib import Path

import pytest
from botdb import settings_for, table_digest

from bot.corpora import CorpusError, list_corpus_files, read_corpus_file
from bot.responder import BotSettings, ChatResponder, default_corpus


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name, text, line, problem", [
    ("faq.yml", "conversations:\n- - Hi\n  - Hello\n- - Bye\n - Goodbye\n", 5, "not valid YAML"),
    ("faq.yml", "conversations:\n- - Hi\n  - Hello\n- - Only a question\n", 4, "statement and its reply"),
    ("faq.yml", "conversations:\n- - Hi\n  - Hello\n- - Question\n  - - nested\n", 5, "must be text"),
    ("faq.yml", "categories: [x]\nconversation:\n- - Hi\n  - Hello\n", 2, "unknown key"),
    ("faq.yml", "conversations:\n- - Hi\n  - ''\n", 3, "empty statement"),
    ("faq.csv", "question,answer\nHi,Hello\nBye,Good,bye\n", 3, "expected 2 columns"),
    ("faq.csv", "Hi,Hello\n,Nobody asked\n", 2, "empty question"),
])
def test_a_malformed_corpus_file_is_refused_with_its_line(tmp_path: Path, name: str, text: str, line: int,
                                                          problem: str):
    path = write(tmp_path / name, text)
    with pytest.raises(CorpusError, match=problem) as refused:
        read_corpus_file(path)
    assert (refused.value.path, refused.value.line) == (path, line)
    assert str(refused.value).startswith(f"{path}, line {line}: ")


def test_yaml_statements_are_taken_as_written(tmp_path: Path):
    faq = read_corpus_file(write(tmp_path / "faq.yml", "conversations:\n- - Are you open on Sunday?\n  - No\n"))
    assert faq.conversations == (("Are you open on Sunday?", "No"),)


def test_folders_and_missing_files(tmp_path: Path):
    write(tmp_path / "b.csv", "Hi,Hello\n")
    write(tmp_path / "a.yml", "conversations:\n- - Hi\n  - Hello\n")
    write(tmp_path / "notes.txt", "not a corpus")
    assert list_corpus_files([tmp_path]) == [tmp_path / "a.yml", tmp_path / "b.csv"]
    with pytest.raises(CorpusError, match="no such file"):
        list_corpus_files([tmp_path / "missing.yml"])


def test_environment_names_the_corpus(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AVATAR_CORPUS", '["a.yml", "faq/"]')
    assert default_corpus() == (Path("a.yml"), Path("faq"))
    monkeypatch.setenv("AVATAR_CORPUS", "a.yml:b.csv")
    assert BotSettings(database_url="sqlite:///x.sqlite3").corpus == (Path("a.yml"), Path("b.csv"))


def test_bad_corpus_refused_at_start_and_database_left_alone(trained_db: Path, tmp_path: Path):
    before = table_digest(trained_db)
    bad = write(tmp_path / "faq.yml", "conversations:\n- - Hi\n  - Hello\n- Bye\n")
    with pytest.raises(CorpusError, match=r"faq\.yml, line 4: a conversation must be a list"):
        ChatResponder.create(settings_for(trained_db, corpus=(bad,)))
    assert table_digest(trained_db) == before


def test_csv_corpus_is_trained_once_and_again_when_it_changes(trained_db: Path, tmp_path: Path):
    faq = write(tmp_path / "faq.csv", 'question,answer\nDo you repair bicycles?,"Yes, on weekdays."\n')
    settings = settings_for(trained_db, corpus=(faq,))
    with ChatResponder.create(settings) as responder:
        assert responder.reply("Can you fix my bike?", "csv") == "Yes, on weekdays."
    trained = table_digest(trained_db)
    with ChatResponder.create(settings) as responder:  # same file: not trained again
        assert responder.reply("Do you repair bicycles?", "csv") == "Yes, on weekdays."
    assert table_digest(trained_db) == trained
    write(faq, 'question,answer\nDo you repair bicycles?,"Only on Mondays."\n')
    with ChatResponder.create(settings) as responder:
        assert responder.reply("Do you repair bicycles?", "csv") == "Only on Mondays."
