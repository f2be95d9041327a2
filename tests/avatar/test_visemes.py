"""Visemes and mouth targets: every phoneme espeak says has a viseme; the mouth opens in speech, rests in
pauses and closes for M/B/P."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

from avatar.types import FPS, VISEMES, AudioClip, Phoneme, Speech
from avatar.visemes import PHONEME_VISEMES, VISEME_SHAPES, mouth_targets, viseme_for
from avatar.voice import EspeakVoice, VoiceSettings

LONG_TEXT = (
    "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs! How vexingly quick daft "
    "zebras jump; the five boxing wizards jump quickly. Sphinx of black quartz, judge my vow. Artificial "
    "Intelligence is the branch of engineering and science devoted to constructing machines that think. It's hard "
    "to say, but the ENIAC is regarded as the first 'real' computer, developed in 1946. Our opening hours are nine "
    "a.m. to five thirty p.m., Monday through Friday. Would you like to talk to a human? Measure the treasure, "
    "choose the church: thought, though, rough, through, bought, boat, boot, book, bird, bard, beard, bared, bored, "
    "buyer, boy, cow, cure, tour, pure, hour, fire. Singing, thinking, azure, vision, yes, year, wet, whether, loch, "
    "uh-huh, hmm, 12,345 dollars on 2024-05-01 at 3:45pm, e.g. Mr. Smith's café. ABC, 100% & co."
)
ACCENTS = ("en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc")


def opening(targets: np.ndarray) -> np.ndarray:
    return targets[:, 0]


def frames_in(speech: Speech, keep, fps: int = FPS) -> np.ndarray:
    """Which frames have their centre inside a phoneme for which keep(phoneme) holds."""
    centres = (np.arange(math.ceil(speech.duration * fps)) + 0.5) / fps
    inside = np.zeros(len(centres), dtype=bool)
    for p in speech.phonemes:
        if keep(p):
            inside |= (centres >= p.start) & (centres < p.end)
    return inside


def made_up(*spans: tuple[str, float]) -> Speech:
    """A Speech from (symbol, seconds) pairs, with silent audio of the same length."""
    phonemes, t = [], 0.0
    for symbol, length in spans:
        phonemes.append(Phoneme(symbol, t, t + length, viseme_for(symbol)))
        t += length
    return Speech("made up", AudioClip(np.zeros(round(t * 48_000), np.int16)), tuple(phonemes))


@pytest.mark.parametrize("accent", ACCENTS)
def test_every_phoneme_espeak_says_has_its_own_viseme(accent: str) -> None:
    speech = EspeakVoice(VoiceSettings(voice=accent)).synthesize(LONG_TEXT)
    said = {p.symbol for p in speech.phonemes}
    assert len(said) > 40
    assert said <= set(PHONEME_VISEMES), f"no viseme for {sorted(said - set(PHONEME_VISEMES))}"


@pytest.mark.parametrize("symbol, viseme", [
    ("m", "closed"), ("b", "closed"), ("p", "closed"), ("f", "fv"), ("v", "fv"), ("A:", "open"), ("aI", "open"),
    ("u:", "rounded"), ("oU", "rounded"), ("w", "rounded"), ("i:", "wide"), ("I", "wide"), ("s", "wide"),
    ("_", "rest"), ("_:", "rest"), ("_!", "rest"),
])
def test_phonemes_map_to_the_expected_visemes(symbol: str, viseme: str) -> None:
    assert viseme_for(symbol) == viseme


def test_unknown_phonemes_fall_back_sensibly() -> None:
    assert viseme_for("m#9") == "closed"          # unknown modifiers are dropped
    assert viseme_for("_new_pause") == "rest"
    assert viseme_for("") == "rest"
    assert viseme_for("§") == "rest"


def test_viseme_shapes_are_complete_and_ordered() -> None:
    assert set(VISEME_SHAPES) == set(VISEMES) and set(PHONEME_VISEMES.values()) <= set(VISEMES)
    for shape in VISEME_SHAPES.values():
        assert all(0.0 <= v <= 1.0 for v in shape.as_array())
    o = {name: shape.opening for name, shape in VISEME_SHAPES.items()}
    assert o["open"] > o["rounded"] > o["wide"] > o["fv"] > o["rest"] >= o["closed"] == 0.0
    assert VISEME_SHAPES["rounded"].roundness > 0.7 > VISEME_SHAPES["wide"].roundness
    assert VISEME_SHAPES["wide"].width > VISEME_SHAPES["rest"].width > VISEME_SHAPES["rounded"].width


def test_targets_have_one_row_per_frame() -> None:
    speech = EspeakVoice().synthesize("One row of mouth shape per video frame.")
    targets = mouth_targets(speech)
    assert targets.dtype == np.float32 and targets.shape == (math.ceil(speech.duration * FPS), 3)
    assert np.all((targets >= 0) & (targets <= 1))
    assert mouth_targets(speech, fps=50).shape[0] == math.ceil(speech.duration * 50)
    longer = mouth_targets(speech, n_frames=len(targets) + 10)
    assert np.allclose(longer[:len(targets) - 2], targets[:len(targets) - 2])
    assert np.allclose(longer[-5:], VISEME_SHAPES["rest"].as_array())   # after the speech the mouth rests
    assert np.array_equal(mouth_targets(speech, n_frames=5), targets[:5])


def test_mouth_opens_in_speech_and_rests_in_pauses() -> None:
    speech = EspeakVoice().synthesize("Hello there. How are you today? I am fine, thank you, and you?")
    targets = opening(mouth_targets(speech))
    pauses = frames_in(speech, lambda p: p.symbol.startswith("_") and p.end - p.start >= 0.12)
    talking = frames_in(speech, lambda p: not p.symbol.startswith("_"))
    assert pauses.sum() >= 4 and talking.sum() >= 30
    assert targets[pauses].mean() < 0.1
    assert targets[talking].mean() > 0.25
    assert np.percentile(targets[talking], 75) > 0.4               # clearly open, not a murmur
    # frames whose neighbours lie inside a pause too (out of the smoothing's reach of speech) are near closed
    deep = [f for p in speech.phonemes if p.symbol.startswith("_")
            for f in range(len(targets)) if p.start <= (f - 1) / FPS and (f + 2) / FPS <= p.end]
    assert deep and targets[deep].max() < 0.06


def test_mama_closes_the_lips_between_syllables() -> None:
    targets = opening(mouth_targets(EspeakVoice().synthesize("mama")))
    # frames as c(losed) or o(pen), skipping the ones in between, then runs collapsed: "coco" = both M's show
    sequence = "".join("c" if v < 0.05 else "o" for v in targets if v < 0.05 or v > 0.4)
    assert "coco" in re.sub(r"(.)\1+", r"\1", sequence), np.round(targets, 2)


def test_a_short_closure_is_not_smoothed_away() -> None:
    speech = made_up(("_", 0.2), ("A:", 0.3), ("b", 0.02), ("A:", 0.3), ("_", 0.2))
    targets = opening(mouth_targets(speech))
    b_frame = int((0.5 + 0.01) * FPS)
    assert targets[b_frame] == 0.0
    assert targets[b_frame - 3] > 0.6 and targets[b_frame + 3] > 0.6
    assert targets[0] < 0.1 and targets[-1] < 0.1


def test_silence_gives_a_resting_mouth() -> None:
    targets = mouth_targets(made_up(("_:", 1.0)))
    assert np.allclose(targets, VISEME_SHAPES["rest"].as_array())
    assert mouth_targets(made_up(("_", 0.0001))).shape == (1, 3)
    assert mouth_targets(Speech("", AudioClip(np.zeros(0, np.int16)), ())).shape == (0, 3)
