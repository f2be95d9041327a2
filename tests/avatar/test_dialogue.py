from pathlib import Path

import pytest

from avatar.dialogue import DialogueError, parse_dialogue, read_dialogue

REPO = Path(__file__).resolve().parents[2]


def test_human_prefix_blank_lines_and_comments_are_dropped():
    text = "Human: Hello there\n\n# a comment\nhuman:what is AI?\n  plain line  \n"
    assert parse_dialogue(text) == ["Hello there", "what is AI?", "plain line"]


def test_paper_dialogue_has_the_five_questions():
    lines = read_dialogue(REPO / "assets" / "dialogues" / "paper.txt")
    assert lines == ["Do you know gossip?", "What is AI?", "What is a super computer?",
                     "How does a computer work?", "What was the first computer?"]


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(DialogueError, match="not found"):
        read_dialogue(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n# nothing\nHuman:  \n")
    with pytest.raises(DialogueError, match="no lines"):
        read_dialogue(empty)
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00garbage\xc3")
    with pytest.raises(DialogueError, match="UTF-8"):
        read_dialogue(binary)
