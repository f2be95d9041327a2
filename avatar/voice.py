"""Text to speech with espeak-ng: 48 kHz PCM plus the phoneme timeline that drives the lip sync.

pyttsx3's own engine only reports words (text offsets, no times), so we drive libespeak-ng through pyttsx3's
ctypes bindings directly, in synchronous mode with phoneme events on: one `espeak_Synth` call hands us the
samples and, interleaved with them, every phoneme with its position in the audio.
"""
from __future__ import annotations

import ctypes
import functools
import threading
from dataclasses import dataclass

import numpy as np
from pyttsx3.drivers import _espeak as espeak
from scipy.signal import firwin, resample_poly

from avatar.types import SAMPLE_RATE, AudioClip, Phoneme, Speech
from avatar.visemes import viseme_for

PAUSE = "_"                     # espeak-ng's mnemonic for a short pause; "_:" and "_!" are longer ones
_INIT_PHONEME_EVENTS = 0x0001   # espeakINITIALIZE_PHONEME_EVENTS
_INIT_DONT_EXIT = 0x8000        # espeakINITIALIZE_DONT_EXIT: report a failed init instead of exit()ing the process
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_MIN_PHONEME = 0.001            # s; shorter phonemes are merged into their neighbours
_BUFFER_MS = 200                # size of the chunks espeak hands to the callback; bigger means fewer calls


class VoiceError(ValueError):
    """Bad voice settings or text that cannot be spoken."""


class UnknownVoiceError(VoiceError):
    """The requested espeak-ng voice or variant is not installed."""


class EmptyTextError(VoiceError):
    """There is nothing to say."""


@dataclass(frozen=True)
class VoiceSettings:
    """How the avatar sounds. `voice` is an espeak-ng language code (see `list_voices()`), optionally with a
    variant such as "en-us+f3" (see `list_variants()`)."""

    voice: str = "en-us"     # American English
    rate: int = 165          # words per minute, 80..400 (faster, espeak time-compresses and its events drift)
    volume: int = 100        # espeak amplitude, 0..200 (100 is its default and does not clip)
    pitch: int = 50          # base pitch, 0..100
    pitch_range: int = 50    # intonation, 0 (monotone)..100

    def __post_init__(self) -> None:
        for name, low, high in (("rate", 80, 400), ("volume", 0, 200), ("pitch", 0, 100), ("pitch_range", 0, 100)):
            value = getattr(self, name)
            if not isinstance(value, int) or not low <= value <= high:
                raise VoiceError(f"voice {name} must be a whole number from {low} to {high}, got {value!r}")
        _check_voice_name(self.voice)


class EspeakVoice:
    """`avatar.types.Voice` backed by libespeak-ng. Safe to call from several threads (calls take turns)."""

    def __init__(self, settings: VoiceSettings | None = None) -> None:
        self.settings = settings or VoiceSettings()

    def synthesize(self, text: str) -> Speech:
        spoken = _speakable(text)
        if not spoken:
            raise EmptyTextError("nothing to say: the text is empty")
        engine = _engine()
        native, events = engine.synth(spoken, self.settings)
        samples = _resample(native, engine.sample_rate)          # int16 [N] at SAMPLE_RATE
        duration = len(samples) / SAMPLE_RATE
        starts = [(symbol, position / engine.sample_rate) for symbol, position in events]
        return Speech(text=text, audio=AudioClip(samples), phonemes=_timeline(starts, duration))


def list_voices() -> list[str]:
    """Language codes of the installed espeak-ng voices, e.g. "en-us", "en-gb-scotland", "fr-fr"."""
    return sorted(_installed().languages)


def list_variants() -> list[str]:
    """Installed voice variants, appended with "+" to a voice: "en-us+f3", "en-gb+m2"."""
    return sorted(_installed().variants)


@dataclass(frozen=True)
class _Installed:
    """What espeak-ng has installed. espeak_SetVoiceByName finds voices by file name ("gmw/en", "en") but not
    always by language ("en-gb"), so both kinds of name map to the voice's identifier."""

    identifiers: dict[str, str]    # lower-case language code or file name -> identifier, e.g. "en-gb" -> "gmw/en"
    languages: frozenset[str]      # the language codes, e.g. "en-gb"
    variants: frozenset[str]       # variant file names, e.g. "f3"

    def espeak_name(self, voice: str) -> str:
        """What espeak_SetVoiceByName needs for one of our voice names: the voice file, plus any variant."""
        name, plus, variant = voice.partition("+")
        return self.identifiers[name.lower()] + plus + variant


def _check_voice_name(voice: str) -> None:
    installed = _installed()
    name, _, variant = voice.partition("+")
    if name.lower() not in installed.identifiers:
        examples = [v for v in ("en-us", "en-gb", "en-gb-scotland", "fr-fr", "de") if v in installed.languages]
        raise UnknownVoiceError(f"unknown voice {name!r}; installed voices include {', '.join(examples)} "
                                f"(avatar.voice.list_voices() lists all {len(installed.languages)})")
    if variant and variant not in installed.variants:
        raise UnknownVoiceError(f"unknown voice variant {variant!r}; try one of "
                                f"{', '.join(sorted(installed.variants)[:6])} (avatar.voice.list_variants() lists all)")


@functools.cache
def _installed() -> _Installed:
    """The installed voices and variants; mbrola voices are left out (they need the mbrola program)."""
    engine = _engine()
    identifiers: dict[str, str] = {}
    languages = set()
    with engine.lock:
        # espeak reuses one array for every listing: copy each out before asking for the next.
        for v in espeak.ListVoices():
            identifier = v.identifier.decode()
            if identifier.startswith("mb/"):
                continue
            # `languages` is a priority byte then a NUL-terminated code; ctypes stops at the first NUL.
            language = v.languages[1:].decode().lower()
            languages.add(language)
            identifiers[language] = identifier
            identifiers.setdefault(identifier.rpartition("/")[2].lower(), identifier)
        variants = {v.identifier.decode().rpartition("/")[2]
                    for v in espeak.ListVoices(espeak.VOICE(languages=b"variant"))}
    return _Installed(identifiers, frozenset(languages), frozenset(variants))


def _speakable(text: str) -> str:
    """The text as espeak should get it: no NULs (they end a C string), no control characters, trimmed."""
    return "".join(c if c.isprintable() else " " for c in text).strip()


def _resample(native: np.ndarray, native_rate: int) -> np.ndarray:
    """int16 at espeak's rate (22050 Hz) to int16 at SAMPLE_RATE, exactly (polyphase, zero phase: no delay)."""
    if native_rate == SAMPLE_RATE or len(native) == 0:
        return native.astype(np.int16)
    g = np.gcd(SAMPLE_RATE, native_rate)
    up, down = SAMPLE_RATE // g, native_rate // g
    resampled = resample_poly(native.astype(np.float32), up, down, window=_low_pass(up, down))
    return np.clip(np.round(resampled), -32768, 32767).astype(np.int16)


@functools.cache
def _low_pass(up: int, down: int) -> np.ndarray:
    """The FIR filter resample_poly designs by default (Kaiser, beta 5), designed once rather than per reply."""
    rate = max(up, down)
    return firwin(2 * 10 * rate + 1, 1.0 / rate, window=("kaiser", 5.0)).astype(np.float32)


def _timeline(starts: list[tuple[str, float]], duration: float) -> tuple[Phoneme, ...]:
    """Phonemes from their start times: each lasts until the next one starts, the last until the audio ends.

    Silence before the first phoneme becomes a pause; phonemes under a millisecond (espeak reports a few of
    zero length, and the end of the audio falls a sample after its last event) are left to their neighbours.
    """
    if duration <= 0:
        return ()
    bounds = [(PAUSE, 0.0)] + [(symbol, min(max(t, 0.0), duration)) for symbol, t in starts]
    ends = [t for _, t in bounds[1:]] + [duration]
    kept = [(symbol, start) for (symbol, start), end in zip(bounds, ends) if end - start >= _MIN_PHONEME]
    if not kept:
        return (Phoneme(PAUSE, 0.0, duration, viseme_for(PAUSE)),)
    kept[0] = (kept[0][0], 0.0)
    ends = [start for _, start in kept[1:]] + [duration]
    return tuple(Phoneme(symbol, start, end, viseme_for(symbol)) for (symbol, start), end in zip(kept, ends))


class _EventId(ctypes.Union):
    # espeak-ng's union: pyttsx3 declares only `number` and `name`; phoneme events fill `string`.
    _fields_ = (("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8))


class _Event(ctypes.Structure):
    """espeak_EVENT as libespeak-ng 1.5x lays it out."""

    _fields_ = (
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),   # ms
        ("sample", ctypes.c_int),           # the same position in samples at espeak's rate
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    )


class _Espeak:
    """libespeak-ng is one global synthesiser per process: initialise it once and let one call use it at a time.

    pyttsx3's `_espeak` only loads the library on import; it calls nothing. Do not also start pyttsx3's own
    espeak driver (`pyttsx3.init()`) in this process: it would re-initialise the library for playback.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()      # re-entrant: listing voices may happen inside a synth call
        rate = espeak.Initialize(espeak.AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, None,
                                 _INIT_PHONEME_EVENTS | _INIT_DONT_EXIT)
        if rate <= 0:
            raise RuntimeError("espeak-ng failed to initialise (is espeak-ng-data installed?)")
        self.sample_rate: int = rate
        self._applied: VoiceSettings | None = None
        self._callback = None
        self._chunks: list[bytes] = []
        self._events: list[tuple[str, int]] = []

    def synth(self, text: str, settings: VoiceSettings) -> tuple[np.ndarray, list[tuple[str, int]]]:
        """Speak `text`: (int16 samples at `sample_rate`, [(phoneme mnemonic, start sample)])."""
        with self.lock:
            if self._callback is None or espeak.SynthCallback is not self._callback:
                espeak.SetSynthCallback(self._on_audio)
                self._callback = espeak.SynthCallback
            if settings != self._applied:
                self._apply(settings)
            self._chunks, self._events = [], []
            status = espeak.Synth(text.encode("utf-8", errors="replace"), flags=espeak.CHARS_UTF8)
            if status != espeak.EE_OK:
                raise RuntimeError(f"espeak-ng could not synthesise the text (status {status})")
            samples = np.frombuffer(b"".join(self._chunks), dtype=np.int16).copy()
            return samples, self._events

    def _apply(self, settings: VoiceSettings) -> None:
        self._applied = None
        if espeak.SetVoiceByName(_installed().espeak_name(settings.voice).encode()) != espeak.EE_OK:
            raise UnknownVoiceError(f"espeak-ng could not load voice {settings.voice!r}")
        for parameter, value in ((espeak.RATE, settings.rate), (espeak.VOLUME, settings.volume),
                                 (espeak.PITCH, settings.pitch), (espeak.RANGE, settings.pitch_range)):
            espeak.SetParameter(parameter, value, 0)
        self._applied = settings

    def _on_audio(self, wav, n_samples: int, events) -> int:
        """espeak's synth callback: collect the samples and the phoneme events of one chunk; 0 = go on."""
        if wav and n_samples > 0:
            self._chunks.append(ctypes.string_at(wav, n_samples * 2))
        event = ctypes.cast(events, ctypes.POINTER(_Event))
        i = 0
        while event[i].type != _EVENT_LIST_TERMINATED:
            if event[i].type == _EVENT_PHONEME:
                self._events.append((event[i].id.string.decode("latin-1"), event[i].sample))
            i += 1
        return 0


_engine_lock = threading.Lock()


@functools.cache
def _create_engine() -> _Espeak:
    return _Espeak()


def _engine() -> _Espeak:
    """The process's one espeak-ng engine, created on first use."""
    with _engine_lock:
        return _create_engine()
