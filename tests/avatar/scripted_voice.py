"""A stand-in `Voice` for tests of the pipeline's wiring without espeak-ng (imported by name: pytest puts this
folder on sys.path)."""
from __future__ import annotations

import numpy as np

from avatar.types import SAMPLE_RATE, AudioClip, Phoneme, Speech


class ScriptedVoice:
    """A stand-in `Voice`: each word is "m" (lips closed) for `closed` s, then "a" (open) for `open_` s, as a
    tone; what the real voice's phonemes would drive, with timings the test knows. With `counting`, the samples
    are a count that runs on across calls (1, 2, ... wrapping at 30,000) instead: where each played sample came
    from can be read off it."""

    def __init__(self, closed: float = 0.12, open_: float = 0.28, counting: bool = False) -> None:
        self.closed, self.open_ = closed, open_
        self.counting = counting
        self.spoken: list[str] = []
        self.produced = 0                  # samples synthesised so far

    def synthesize(self, text: str) -> Speech:
        self.spoken.append(text)
        phonemes, t = [], 0.0
        for _ in text.split():
            phonemes.append(Phoneme("m", t, t + self.closed, "closed"))
            phonemes.append(Phoneme("a", t + self.closed, t + self.closed + self.open_, "open"))
            t += self.closed + self.open_
        n = int(round(t * SAMPLE_RATE))
        if self.counting:
            samples = ((self.produced + np.arange(n)) % 30_000 + 1).astype(np.int16)
        else:
            samples = (3000 * np.sin(2 * np.pi * 220 * np.arange(n) / SAMPLE_RATE)).astype(np.int16)
        self.produced += n
        return Speech(text=text, audio=AudioClip(samples), phonemes=tuple(phonemes))
