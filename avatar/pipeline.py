"""One turn of a conversation, from reply text to a playable utterance, and the avatar that plays it.

`AvatarEngine` holds what every session shares (voice, driving clip, face model, renderer); each live session
or export gets its own `Performer`, whose motion planner keeps that session's head motion continuous.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avatar.types import BUILT_IN_NAME, FPS, FaceModel, Utterance, Voice


@dataclass(frozen=True)
class AvatarSettings:
    """Which avatar to show and how it speaks."""

    avatar: str = "default"          # "default" (built-in, generated), an avatar bundle (folder or .avatar file)
                                     # or a driving-clip .npz
    voice: str = "en-us+f3"       # espeak-ng voice; the built-in avatar is a woman
    rate: int = 165                  # words per minute
    label: str = "AI-generated"      # visible label drawn on every frame


def _not_an_avatar(avatar: str) -> str:
    problem = "not found" if not Path(avatar).exists() else "not an avatar"
    return (f"avatar {avatar!r}: {problem}; use 'default', an avatar bundle folder or .avatar file, "
            "or a driving-clip .npz")


def check_avatar(avatar: str) -> None:
    """Refuse (ValueError) what `AvatarEngine.from_settings` would refuse, before a service starts: an unknown
    path, or a bundle with a missing, truncated or altered file (every hash is checked; no frame is decoded)."""
    from avatar.bundle import is_bundle, open_bundle

    path = Path(avatar)
    if avatar == "default" or (path.is_file() and path.suffix.lower() == ".npz"):
        return
    if not is_bundle(path):
        raise ValueError(_not_an_avatar(avatar))
    open_bundle(path)


class AvatarEngine:
    """The shared, read-only parts: voice, driving clip, face model and renderer."""

    def __init__(self, voice: Voice, clip, face_model: FaceModel | None, label: str = "AI-generated",
                 name: str = BUILT_IN_NAME, consent: tuple[str, ...] = ()) -> None:
        from avatar.render import Renderer

        self.voice = voice
        self.clip = clip
        self.name = name              # shown on the page and kiosk, written into exports' provenance
        self.consent = consent        # consent records of a custom avatar ("role: name, file sha256 ..."), in words
        self.renderer = Renderer(clip, face_model, label=label)

    @classmethod
    def from_settings(cls, settings: AvatarSettings) -> "AvatarEngine":
        from avatar.bundle import is_bundle, load_bundle
        from avatar.default_avatar import load_default_clip
        from avatar.driving import DrivingClip
        from avatar.face import IdentityFaceModel
        from avatar.voice import EspeakVoice, VoiceSettings

        name, consent, face_model = BUILT_IN_NAME, (), IdentityFaceModel()
        path = Path(settings.avatar)
        if settings.avatar == "default":
            clip = load_default_clip()
        elif is_bundle(path):
            bundle, clip = load_bundle(path)
            name, consent = bundle.name, bundle.consent
            face_model = None              # baked: the frames already show the subject's face
        elif path.is_file() and path.suffix.lower() == ".npz":
            clip = DrivingClip.load(path)
            name = f"driving clip {path.name}"
        else:
            raise ValueError(_not_an_avatar(settings.avatar))
        voice = EspeakVoice(VoiceSettings(voice=settings.voice, rate=settings.rate))
        return cls(voice, clip, face_model, label=settings.label, name=name, consent=consent)

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of rendered frames: the renderer's."""
        return self.renderer.frame_size

    def performer(self, seed: int = 0) -> "Performer":
        return Performer(self, seed)


class Performer:
    """One viewer's avatar: turns reply text into utterances and picks idle frames, continuously."""

    def __init__(self, engine: AvatarEngine, seed: int = 0) -> None:
        from avatar.motion import MotionPlanner

        self.engine = engine
        self.planner = MotionPlanner(engine.clip, seed=seed)

    def prepare(self, text: str) -> Utterance:
        """Synthesise `text` whole and plan one driving frame per video frame of its audio (CPU work: run off the
        loop). The export's way; a live session speaks in pieces (`prepare_stream`)."""
        from avatar.visemes import mouth_targets

        speech = self.engine.voice.synthesize(text)
        n_frames = int(np.ceil(speech.duration * FPS - 1e-6))
        targets = mouth_targets(speech, fps=FPS, n_frames=n_frames)
        indices = self.planner.speak(targets)
        return Utterance(speech=speech, mouth_targets=targets, frame_indices=np.asarray(indices, np.int64))

    def prepare_stream(self, text: str) -> Iterator[tuple[Utterance, bool]]:
        """`text` in pieces, each synthesised and planned as it is reached: (segment, more) in order (CPU work:
        run off the loop). See avatar/speaking.py."""
        from avatar.speaking import speak_in_segments

        return speak_in_segments(self.engine.voice, self.planner, text)

    def idle(self, n: int) -> np.ndarray:
        """Driving frames for `n` listening frames."""
        return np.asarray(self.planner.idle(n), np.int64)

    def idle_towards(self, n: int, target: int) -> bool:
        """Plan the next `n` listening frames to end on driving frame `target`; False if it is out of reach."""
        return self.planner.idle_towards(n, target)

    def follow(self, index: int) -> None:
        """Driving frame `index` was shown in place of the next listening frame: continue from it."""
        self.planner.follow(index)

    def interrupt(self, current: int | None = None) -> None:
        """Barge-in: drop back to listening, continuing from driving frame `current` (the one on screen)."""
        self.planner.reset_to_idle(current=current)

    def render(self, index: int) -> np.ndarray:
        """The output frame (uint8 [H, W, 3] RGB) for driving frame `index`."""
        return self.engine.renderer.render(int(index))

