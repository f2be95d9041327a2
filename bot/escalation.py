"""Messages a person must see: emergencies (falls, chest pain, breathing trouble, overdose, unconsciousness,
self-harm or suicide, ...) and requests to talk to a human.

Each is recognised by meaning (cosine similarity of the message's sentence embedding to examples of our
own, and for emergencies clearly closer to them than to everyday look-alikes such as medicine questions)
or by a short keyword list, checked before any corpus matching. This is a safety net for a chat
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
    "He is lying on the ground and can't get up",
    "I think I broke my leg",
    # heart and stroke
    "I have a strong pain in my chest",
    "I think I am having a heart attack",
    "My chest feels tight and the pain goes down my arm",
    "My face is drooping and I cannot speak properly",
    "Half of my body suddenly went numb",
    "She suddenly can't lift her arm and her words are jumbled",
    # breathing
    "I can't breathe",
    "He is choking and can't get air",
    "I am struggling to breathe and my lips are turning blue",
    "She is gasping for breath",
    # poisoning and overdose
    "I took too many of my pills on purpose",
    "My son swallowed a bottle of tablets",
    "I think I overdosed",
    "I have taken all of my medication at once",
    "My child drank bleach",
    # unconsciousness, collapse, fits
    "My wife has collapsed and is not responding",
    "He passed out and won't wake up",
    "She is unconscious",
    "My father is having a seizure",
    "He is not moving and doesn't answer when I talk to him",
    "She fainted and is still out cold",
    # bleeding, burns, fire
    "I cut myself badly and the bleeding won't stop",
    "He is bleeding a lot from a wound",
    "I burned myself badly with boiling water",
    "The kitchen is on fire",
    # self-harm and suicide
    "I want to kill myself",
    "I don't want to live anymore",
    "I am thinking about ending my life",
    "I want to hurt myself",
    "I have been harming myself",
    "Nobody would miss me if I was gone",
    "I have a plan to end it all",
    "Life is not worth living and I want it to be over",
    # calls for help
    "Help, call an ambulance",
    "This is an emergency, I need help right now",
    "Someone is attacking me",
)

# Everyday messages that read like the examples above (medicine, breathing, falling asleep...): a message
# is only urgent by meaning when it is clearly closer to an urgent example than to all of these.
ORDINARY_EXAMPLES = (
    "I need a refill of my medicine",
    "I am running low on my tablets",
    "I have run out of my pills and need more",
    "Did I take my pills this morning?",
    "Can you remind me to take my tablets?",
    "When should I take my medication?",
    "What are the side effects of this medicine?",
    "Can you breathe?",
    "Do you feel pain?",
    "Can robots die?",
    "I fell asleep in front of the television",
    "I fell in love",
    "My computer crashed",
    "I am tired today",
    "I have a cold and a runny nose",
    "My back hurts a little after gardening",
    "I feel a bit sad today",
    "My hearing aid is broken",
    "My wheelchair needs a repair",
    "How do I book a doctor's appointment?",
)

# Word patterns that flag a message whatever the similarity says (case-insensitive, whole words): the usual
# words of emergency triage, not an attempt to list every wording.
URGENT_KEYWORDS = (
    r"suicid\w*", r"kill(ing)? my ?self", r"end(ing)? (it all|my life|it tonight|it now)", r"want(ed)? to die",
    r"(take|taking) my own life", r"(no|the) (reason|point) (to live|in living|of living)", r"self[- ]harm\w*",
    r"(cut|cutting|harm|harming|hurt|hurting) my ?(self|wrists?|arms?)",
    r"overdos\w*", r"too many (pills|tablets)", r"whole (packet|box|bottle) of",
    r"(swallowed|taken|took) all (of )?(my|his|her) \w* ?(pills|tablets)", r"poison\w*", r"heart attack",
    r"chest pains?", r"pain in (my|his|her) chest", r"can'?t breathe?", r"cannot breathe", r"not breathing",
    r"(isn'?t|is not|stopped) breathing", r"unable to breathe", r"unconscious", r"unresponsive",
    r"(has |have |just )?collapsed", r"passed out", r"(not|won'?t|can'?t) wake( him| her| up)?", r"not waking up",
    r"fallen (down|over)", r"fell (down|over|off)", r"(lying|lay) on the (floor|ground)", r"seizure", r"stroke",
    r"slurred", r"face (is )?(drooping|lopsided)", r"convuls\w*", r"foaming at the mouth", r"choking",
    r"bleeding (heavily|badly|a lot)", r"ambulance",
    r"emergency",
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
    r"(connect|transfer|put|pass) me (through )?(to|with)", r"is there (a|an|any) (real )?(person|human|one|body)",
    r"operator",
)


@dataclass(frozen=True)
class Detection:
    """What a message was recognised as, and why (for the logs)."""

    kind: str          # "urgent" or "handover"
    similarity: float  # to the closest example
    keyword: str       # the keyword pattern matched, '' for none


class Escalation:
    """Recognises urgent messages and hand-over requests, by similarity to examples and by keywords."""

    def __init__(self, encoder: SentenceEncoder, urgent_similarity: float = 0.55, handover_similarity: float = 0.7,
                 urgent_margin: float = 0.05):
        self.urgent_similarity = urgent_similarity
        self.handover_similarity = handover_similarity
        self.urgent_margin = urgent_margin
        self._urgent = encoder.encode(list(URGENT_EXAMPLES))      # [U, H]
        self._ordinary = encoder.encode(list(ORDINARY_EXAMPLES))  # [O, H]
        self._handover = encoder.encode(list(HANDOVER_EXAMPLES))  # [V, H]
        self._urgent_words = _compile(URGENT_KEYWORDS)
        self._handover_words = _compile(HANDOVER_KEYWORDS)

    def detect(self, text: str, vector: np.ndarray) -> Detection | None:
        """'urgent' before 'handover'; None for an ordinary message. `vector` is the text's embedding."""
        urgent = float((self._urgent @ vector).max())
        ordinary = float((self._ordinary @ vector).max())
        keyword = self._urgent_words.search(text)
        if keyword or (urgent >= self.urgent_similarity and urgent >= ordinary + self.urgent_margin):
            return Detection("urgent", urgent, keyword.group(0) if keyword else "")
        handover = float((self._handover @ vector).max())
        keyword = self._handover_words.search(text)
        if keyword or handover >= self.handover_similarity:
            return Detection("handover", handover, keyword.group(0) if keyword else "")
        return None


def _compile(patterns: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(r"\b(" + "|".join(patterns) + r")\b", re.IGNORECASE)
