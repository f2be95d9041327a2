"""Small value types and seams that cross package borders.

Everything here is plain data (dataclasses over numpy arrays) or a `typing.Protocol`, so that tests can
pass fakes and no package has to import another package's machinery to talk to it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

FPS = 25                # video frame rate everywhere: live tracks and exported files
BUILT_IN_NAME = "built-in avatar"    # the name of the avatar that ships with the project
SAMPLE_RATE = 48_000    # PCM rate everywhere: what the voice produces, what WebRTC and AAC take
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS   # 1920 audio samples per video frame

# The viseme set: the mouth shapes that the lip sync distinguishes.
VISEMES = ("rest", "closed", "open", "rounded", "fv", "wide")


@dataclass(frozen=True)
class AudioClip:
    """Mono 16-bit PCM."""

    samples: np.ndarray          # int16 [N]
    sample_rate: int = SAMPLE_RATE

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


@dataclass(frozen=True)
class Phoneme:
    """One phoneme of synthesised speech, placed on the audio's time axis (seconds from its first sample)."""

    symbol: str      # espeak-ng's phoneme mnemonic, e.g. "a", "m", "_:" (pause)
    start: float
    end: float
    viseme: str      # one of VISEMES


@dataclass(frozen=True)
class MouthShape:
    """Mouth descriptors, each in [0, 1]: how open, how wide, how rounded."""

    opening: float
    width: float
    roundness: float

    def as_array(self) -> np.ndarray:
        return np.array([self.opening, self.width, self.roundness], dtype=np.float32)


@dataclass(frozen=True)
class Speech:
    """Synthesised speech: the audio plus its phoneme timeline, aligned to the samples."""

    text: str
    audio: AudioClip
    phonemes: tuple[Phoneme, ...]

    @property
    def duration(self) -> float:
        return self.audio.duration


@dataclass(frozen=True)
class Utterance:
    """One spoken reply ready to play: its speech and, per video frame, the mouth target and the driving frame."""

    speech: Speech
    mouth_targets: np.ndarray       # float32 [F, 3] (opening, width, roundness) per video frame
    frame_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # int64 [F] driving frames

    @property
    def n_frames(self) -> int:
        return len(self.mouth_targets)


class Responder(Protocol):
    """The dialogue engine: one reply per message, a conversation per session."""

    def reply(self, text: str, session_id: str = "default") -> str: ...


class Voice(Protocol):
    """Text to speech with a phoneme timeline."""

    def synthesize(self, text: str) -> Speech: ...


class FaceModel(Protocol):
    """The per-frame face step: aligned faces in, faces and blend masks out.

    faces: uint8 [N, S, S, 3] RGB, aligned to the face template. Returns (faces uint8 [N, S, S, 3],
    masks float32 [N, S, S] in [0, 1]). The identity model returns its input; the face-swap model goes here.
    """

    def __call__(self, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...
