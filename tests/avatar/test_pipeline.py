"""The pipeline's wiring (avatar/pipeline.py) without espeak-ng: a scripted voice whose phonemes are known, the
built-in clip, the motion planner and the renderer; and which avatars `check_avatar` refuses."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avatar.face import IdentityFaceModel
from avatar.pipeline import AvatarEngine, check_avatar
from avatar.types import FPS
from scripted_voice import ScriptedVoice


@pytest.fixture(scope="module")
def scripted_engine(default_clip) -> AvatarEngine:
    return AvatarEngine(ScriptedVoice(), default_clip, IdentityFaceModel())


def test_an_utterance_has_a_driving_frame_per_video_frame_of_its_audio(scripted_engine) -> None:
    performer = scripted_engine.performer(seed=1)
    utterance = performer.prepare("one two three")
    assert scripted_engine.voice.spoken[-1] == "one two three"
    assert utterance.speech.duration == pytest.approx(1.2, abs=1e-3)
    assert utterance.n_frames == int(np.ceil(1.2 * FPS - 1e-6)) == len(utterance.frame_indices)
    clip = scripted_engine.clip
    assert utterance.frame_indices.min() >= 0 and utterance.frame_indices.max() < len(clip)


def test_the_chosen_frames_open_the_mouth_where_the_voice_says_a(scripted_engine) -> None:
    utterance = scripted_engine.performer(seed=2).prepare("ma ma ma ma")
    times = (np.arange(utterance.n_frames) + 0.5) / FPS
    in_word = times % 0.4
    opening = scripted_engine.clip.mouth[utterance.frame_indices, 0]
    closed = opening[(in_word > 0.02) & (in_word < 0.10)]             # well inside an "m"
    open_ = opening[(in_word > 0.20) & (in_word < 0.36)]              # well inside an "a"
    assert open_.mean() > closed.mean() + 0.2, (closed, open_)


def test_idle_interrupt_and_render(scripted_engine) -> None:
    performer = scripted_engine.performer(seed=3)
    idle = performer.idle(50)
    assert idle.shape == (50,) and idle.dtype == np.int64
    assert idle.min() >= 0 and idle.max() < len(scripted_engine.clip)
    performer.prepare("hello there")
    performer.interrupt(current=int(idle[-1]))                        # barge-in: back to listening from there
    assert len(performer.idle(10)) == 10
    frame = performer.render(int(idle[0]))
    width, height = scripted_engine.frame_size
    assert frame.shape == (height, width, 3) and frame.dtype == np.uint8


def test_sessions_get_their_own_performers(scripted_engine) -> None:
    first, second = scripted_engine.performer(seed=4), scripted_engine.performer(seed=5)
    assert first.planner is not second.planner
    assert not np.array_equal(first.idle(100), second.idle(100))     # each viewer's idle motion is its own


def test_check_avatar_refuses_what_the_engine_cannot_load(tmp_path: Path) -> None:
    check_avatar("default")
    with pytest.raises(ValueError, match="not found"):
        check_avatar(str(tmp_path / "missing.avatar"))
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match="not an avatar"):
        check_avatar(str(tmp_path / "folder"))
