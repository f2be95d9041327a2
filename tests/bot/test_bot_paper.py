"""The paper's five questions get the paper's answers, every time, in any session."""
from pathlib import Path

from bot.responder import ChatResponder

PAPER_DIALOGUE = Path(__file__).resolve().parents[2] / "assets" / "dialogues" / "paper.txt"

PAPER_ANSWERS = {
    "Do you know gossip?":
        "Gregory said I respond to the current line, not with respect to the entire conversation. "
        "Does that count as gossip?",
    "What is AI?":
        "Artificial Intelligence is the branch of engineering and science devoted to constructing machines "
        "that think.",
    "What is a super computer?":
        "Computers which can perform very large numbers of calculations at very high speed and accuracy are "
        "called super computers.",
    "How does a computer work?":
        "Computers are very dumb. They only execute instructions given by humans.",
    "What was the first computer?":
        "It's hard to say, but The ENIAC is regarded as the first 'real' computer. It was developed at "
        "University of Pennsylvania in 1946.",
}


def paper_questions() -> list[str]:
    lines = [line.strip() for line in PAPER_DIALOGUE.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [line.removeprefix("Human:").strip() for line in lines]


def test_dialogue_file_holds_the_five_questions():
    assert paper_questions() == list(PAPER_ANSWERS)


def test_paper_questions_get_paper_answers(responder: ChatResponder):
    answers = {question: responder.reply(question, session_id="paper") for question in paper_questions()}
    assert answers == PAPER_ANSWERS


def test_answers_are_stable_across_sessions_and_repeats(responder: ChatResponder):
    for attempt in range(3):
        for question, answer in PAPER_ANSWERS.items():
            assert responder.reply(question, session_id=f"stable-{attempt}-{question}") == answer


def test_answers_tolerate_case_and_spacing(responder: ChatResponder):
    assert responder.reply("  what   is AI ? ", session_id="spacing") == PAPER_ANSWERS["What is AI?"]
