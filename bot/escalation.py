"""Messages a person must see: emergencies (falls, chest pain, breathing trouble, overdose, unconsciousness,
self-harm or suicide, ...) and requests to talk to a human.

Each is recognised by meaning (cosine similarity of the message's sentence embedding to a few examples of
our own) or by a short keyword list, checked before any corpus matching. This is a safety net for a chat
assistant, not a medical device: it may miss an emergency worded unlike anything here, and may also flag
a message that is not one.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from bot.embedding import SentenceEncoder

URGENT_EXAMPLES = (
    # falls and injuries
    "I have fallen and I cannot get up",
    "My mother fell down the stairs and is hurt",
    "I slipped in the bathroom and I can't move my leg",
    "I fell and hit my head, there is a lot of blood",
    # heart and stroke
    "I have a strong pain in my chest",
    "I think I am having a heart attack",
    "My face is drooping and I cannot speak properly",
    "Half of my body suddenly went numb",
    # breathing
    "I can't breathe",
    "He is choking and can't get air",
    "I am struggling to breathe and my lips are turning blue",
    # poisoning and overdose
    "I took too many of my pills",
    "My son swallowed a bottle of tablets",
    "I think I overdosed",
    # unconsciousness and collapse
    "My wife has collapsed and is not responding",
    "He passed out and won't wake up",
    "She is unconscious",
    "My father is having a seizure",
    # bleeding, burns
    "I cut myself badly and the bleeding won't stop",
    "The kitchen is on fire",
    # self-harm and suicide
    "I want to kill myself",
    "I don't want to live anymore",
    "I am thinking about ending my life",
    "I want to hurt myself",
    "Nobody would miss me if I was gone",
    # calls for help
    "Help, call an ambulance",
    "This is an emergency, I need help right now",
)

# Word patterns that flag a message whatever the similarity says (case-insensitive, whole words).
URGENT_KEYWORDS = (
    r"suicid\w*", r"kill(ing)? my ?self", r"end(ing)? (it all|my life)", r"want(ed)? to die", r"self[- ]harm",
    r"overdos\w*", r"too many (pills|tablets)", r"heart attack", r"chest pains?", r"pain in (my|his|her) chest",
    r"can'?t breathe?", r"cannot breathe", r"not breathing", r"unable to breathe", r"unconscious", r"unresponsive",
    r"(has |have |just )?collapsed", r"passed out", r"(have |has |just )?fallen (down|over)?", r"fell (down|over|off)",
    r"seizure", r"stroke", r"choking", r"bleeding (heavily|badly|a lot)", r"ambulance", r"emergency",
)

HANDOVER_EXAMPLES = (
    "I want to talk to a human",
    "Can I speak to a real person?",
    "Put me through to someone from your staff",
    "I would like to talk to an employee",
    "Let me speak with a customer service agent",
    "Is there a person I can talk to?",
    "Get me a human being please",
)

HANDOVER_KEYWORDS = (
    r"(talk|speak|chat) (to|with) (a |an |some )?(human|person|people|someone|somebody|agent|operator|"
    r"representative|staff|employee|nurse|carer|caregiver)",
    r"real (person|human)", r"human being", r"(customer service|support) (agent|person|representative)",
)


@dataclass(frozen=True)
class Detection:
    """What a message was recognised as, and why (for the logs)."""

    kind: str          # "urgent" or "handover"
    similarity: float  # to the closest example
    keyword: str       # the keyword pattern matched, '' for none


class Escalation:
    """Recognises urgent messages and hand-over requests, by similarity to examples and by keywords."""

    def __init__(self, encoder: SentenceEncoder, urgent_similarity: float = 0.6, handover_similarity: float = 0.7,
                 urgent_examples=URGENT_EXAMPLES, handover_examples=HANDOVER_EXAMPLES):
        self.urgent_similarity = urgent_similarity
        self.handover_similarity = handover_similarity
        self._urgent = encoder.encode(list(urgent_examples))      # [U, H]
        self._handover = encoder.encode(list(handover_examples))  # [V, H]
        self._urgent_words = _compile(URGENT_KEYWORDS)
        self._handover_words = _compile(HANDOVER_KEYWORDS)

    def detect(self, text: str, vector: np.ndarray) -> Detection | None:
        """'urgent' before 'handover'; None for an ordinary message. `vector` is the text's embedding."""
        for kind, examples, threshold, words in (
            ("urgent", self._urgent, self.urgent_similarity, self._urgent_words),
            ("handover", self._handover, self.handover_similarity, self._handover_words),
        ):
            similarity = float((examples @ vector).max())
            keyword = words.search(text)
            if similarity >= threshold or keyword:
                return Detection(kind, similarity, keyword.group(0) if keyword else "")
        return None


def _compile(patterns: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(r"\b(" + "|".join(patterns) + r")\b", re.IGNORECASE)
