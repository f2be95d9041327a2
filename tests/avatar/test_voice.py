"""espeak-ng voice: 48 kHz PCM whose phoneme timeline covers the audio and lines up with its sound."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from avatar.types import FPS, SAMPLE_RATE, VISEMES, Speech
from avatar.voice import EmptyTextError, EspeakVoice, VoiceSettings, list_variants, list_voices

TEXT = ("Hello, and welcome. I am a virtual assistant; I can answer questions about our opening hours. "
        "What would you like to know? Maybe the weather, or the first computer.")
WINDOW = SAMPLE_RATE // 100          # 10 ms analysis windows


@pytest.fixture(scope="module")
def speech() -> Speech:
    return EspeakVoice().synthesize(TEXT)


def window_rms(speech: Speech) -> tuple[np.ndarray, np.ndarray]:
    """(RMS of each 10 ms window, the window's centre time in seconds)."""
    x = speech.audio.samples.astype(np.float64)
    n = len(x) // WINDOW
    rms = np.sqrt((x[: n * WINDOW].reshape(n, WINDOW) ** 2).mean(axis=1))
    return rms, (np.arange(n) + 0.5) * WINDOW / SAMPLE_RATE


def in_pause(speech: Speech, times: np.ndarray) -> np.ndarray:
    pause = np.zeros(len(times), dtype=bool)
    for p in speech.phonemes:
        if p.symbol.startswith("_"):
            pause |= (times >= p.start) & (times < p.end)
    return pause


def test_audio_is_48k_mono_int16_speech(speech: Speech) -> None:
    audio = speech.audio
    assert audio.sample_rate == SAMPLE_RATE == 48_000
    assert audio.samples.dtype == np.int16 and audio.samples.ndim == 1
    assert 4.0 < audio.duration < 20.0                  # two sentences at 165 wpm
    assert np.abs(audio.samples.astype(np.int32)).max() > 5000
    assert speech.text == TEXT


def test_timeline_is_ordered_contiguous_and_covers_the_audio(speech: Speech) -> None:
    phonemes = speech.phonemes
    assert len(phonemes) > 50
    assert phonemes[0].start == 0.0
    assert abs(phonemes[-1].end - speech.duration) < 1 / FPS
    for before, after in zip(phonemes, phonemes[1:]):
        assert after.start == pytest.approx(before.end, abs=1e-9)
    assert all(p.end > p.start for p in phonemes)
    assert all(p.viseme in VISEMES for p in phonemes)
    assert any(p.symbol.startswith("_") for p in phonemes[1:-1])      # the commas and full stops pause


@pytest.mark.parametrize("settings", [VoiceSettings(), VoiceSettings(rate=80), VoiceSettings(rate=400),
                                      VoiceSettings(voice="en-gb+f3")], ids=["default", "slowest", "fastest", "gb-f3"])
def test_voiced_energy_falls_inside_phonemes_not_pauses(settings: VoiceSettings) -> None:
    speech = EspeakVoice(settings).synthesize(TEXT)
    rms, times = window_rms(speech)
    pause = in_pause(speech, times)
    loud = rms > 0.1 * np.percentile(rms, 90)
    assert pause.sum() >= 10                          # at least 0.1 s of pauses to judge
    assert (loud & ~pause).sum() / loud.sum() >= 0.9   # voiced energy lies in phoneme spans
    assert (~loud & pause).sum() / pause.sum() >= 0.8  # and pauses are mostly quiet


def test_phoneme_times_match_the_sound_within_words() -> None:
    """Each /s/ span hisses (its energy lies above 3 kHz) and each vowel span does not: times fit phoneme by phoneme."""
    speech = EspeakVoice().synthesize("So she sees the sun set, sissy.")
    x = speech.audio.samples.astype(np.float64)

    def high_share(start: float, end: float) -> float:
        power = np.abs(np.fft.rfft(x[int(start * SAMPLE_RATE): int(end * SAMPLE_RATE)])) ** 2
        freqs = np.fft.rfftfreq(2 * (len(power) - 1), 1 / SAMPLE_RATE)
        return float(power[freqs > 3000].sum() / power.sum())

    hisses = [high_share(p.start, p.end) for p in speech.phonemes if p.symbol == "s"]
    vowels = [high_share(p.start, p.end) for p in speech.phonemes if p.symbol[0] in "aeiouAEIOUV@03"]
    assert len(hisses) >= 5 and len(vowels) >= 5
    assert min(hisses) > 0.6
    assert max(vowels) < 0.3


def test_rate_changes_the_duration() -> None:
    slow = EspeakVoice(VoiceSettings(rate=100)).synthesize(TEXT)
    fast = EspeakVoice(VoiceSettings(rate=300)).synthesize(TEXT)
    assert slow.duration > 1.8 * fast.duration


def test_voice_changes_the_output() -> None:
    text = "Park the car in the garden after dark."
    us = EspeakVoice(VoiceSettings(voice="en-us")).synthesize(text)
    gb = EspeakVoice(VoiceSettings(voice="en-gb")).synthesize(text)
    us_symbols = [p.symbol for p in us.phonemes]
    gb_symbols = [p.symbol for p in gb.phonemes]
    assert us_symbols != gb_symbols                    # American and British pronounce it differently
    female = EspeakVoice(VoiceSettings(voice="en-us+f3")).synthesize(text)
    assert sounds(female) == sounds(us)                   # same words and accent ...
    assert median_pitch(female) > 1.5 * median_pitch(us)  # ... in a higher voice


def test_pitch_setting_moves_the_pitch() -> None:
    low, mid, high = (median_pitch(EspeakVoice(VoiceSettings(pitch=p)).synthesize(TEXT)) for p in (20, 50, 80))
    assert low < 0.9 * mid and high > 1.1 * mid
    assert 60 < mid < 200                                 # an adult voice, in Hz


def median_pitch(speech: Speech) -> float:
    """Median F0 in Hz of the loud 40 ms windows, from the autocorrelation peak between 60 and 400 Hz."""
    x = speech.audio.samples.astype(np.float64)
    size, shortest, longest = 2048, SAMPLE_RATE // 400, SAMPLE_RATE // 60
    estimates = []
    for start in range(0, len(x) - size, size):
        window = x[start:start + size] - x[start:start + size].mean()
        if np.sqrt(np.mean(window**2)) < 1500:
            continue
        correlation = np.correlate(window, window, "full")[size - 1:]
        estimates.append(SAMPLE_RATE / (shortest + np.argmax(correlation[shortest:longest])))
    assert len(estimates) >= 5
    return float(np.median(estimates))


def sounds(speech: Speech) -> list[str]:
    """The phonemes without the pauses (espeak's trailing pause varies by a sample or two)."""
    return [p.symbol for p in speech.phonemes if not p.symbol.startswith("_")]


def test_volume_scales_the_audio() -> None:
    loud = EspeakVoice(VoiceSettings(volume=100)).synthesize(TEXT).audio.samples.astype(np.float64)
    quiet = EspeakVoice(VoiceSettings(volume=40)).synthesize(TEXT).audio.samples.astype(np.float64)
    ratio = np.sqrt(np.mean(quiet**2) / np.mean(loud**2))
    assert 0.25 < ratio < 0.55


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown voice 'klingon'.*en-us"):
        VoiceSettings(voice="klingon")
    with pytest.raises(ValueError, match="variant 'nobody'"):
        VoiceSettings(voice="en-us+nobody")
    with pytest.raises(ValueError, match="rate"):
        VoiceSettings(rate=5)
    with pytest.raises(ValueError, match="volume"):
        VoiceSettings(volume=-1)
    assert VoiceSettings(voice="EN-GB").voice == "EN-GB"          # names are case-insensitive


def test_installed_voices_are_listed() -> None:
    voices = list_voices()
    assert {"en-us", "en-gb", "fr-fr", "de"} <= set(voices)
    assert "f3" in list_variants()
    for voice in ("en-gb-scotland", "fr-fr"):
        assert EspeakVoice(VoiceSettings(voice=voice)).synthesize("Bonjour").duration > 0.2


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "\x00"])
def test_empty_text_is_refused(text: str) -> None:
    with pytest.raises(EmptyTextError, match="empty"):
        EspeakVoice().synthesize(text)
    assert issubclass(EmptyTextError, ValueError)


@pytest.mark.parametrize("text", ["😀", "...", "<b>bold</b> & co", "nul\x00byte", "lone \ud800 surrogate", "ไม่"])
def test_odd_text_still_gives_a_valid_speech(text: str) -> None:
    speech = EspeakVoice().synthesize(text)
    assert speech.audio.samples.dtype == np.int16
    assert speech.phonemes[0].start == 0.0
    assert abs(speech.phonemes[-1].end - speech.duration) < 1 / FPS


def test_concurrent_calls_give_the_sequential_results() -> None:
    jobs = [(VoiceSettings(voice=voice, rate=rate), f"Sentence number {i}, said by voice {voice}.")
            for i, (voice, rate) in enumerate([("en-us", 165), ("en-gb", 200), ("en-us+f3", 140), ("en-us", 250)] * 3)]
    sequential = [EspeakVoice(settings).synthesize(text) for settings, text in jobs]
    with ThreadPoolExecutor(max_workers=6) as pool:
        concurrent = list(pool.map(lambda job: EspeakVoice(job[0]).synthesize(job[1]), jobs))
    # espeak-ng carries a little wave state from call to call, so the same text comes out up to a few tenths of a
    # percent longer or shorter: compare within that. A mixed-up call (other text, voice or rate) is far off.
    for one, other in zip(sequential, concurrent):
        tolerance = 0.005 + 0.005 * one.duration
        assert one.text == other.text
        assert sounds(one) == sounds(other)
        assert abs(one.duration - other.duration) < tolerance
        starts = np.array([p.start for p in one.phonemes if not p.symbol.startswith("_")])
        assert np.abs(starts - [p.start for p in other.phonemes if not p.symbol.startswith("_")]).max() < tolerance
