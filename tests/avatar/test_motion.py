"""The motion planner on the default clip: lip sync follows targets, the head never jumps, idle blinks."""
from __future__ import annotations

import numpy as np
import pytest

from avatar.default_avatar import frame_specs
from avatar.driving import DrivingClip
from avatar.motion import MotionPlanner, MotionSettings
from avatar.types import FPS


def _speech_targets(n: int, seed: int = 0) -> np.ndarray:
    """A syllable-like opening pattern with varying widths and roundness."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    opening = np.clip(0.5 + 0.5 * np.sin(t / 2.2 + rng.uniform(0, 6)), 0, 1) * rng.uniform(0.5, 1.0, n) ** 0.3
    width = np.clip(0.5 + 0.3 * np.sin(t / 7.0), 0, 1)
    roundness = np.clip(0.5 * np.sin(t / 5.0), 0, 1)
    return np.stack([opening, width, roundness], 1).astype(np.float32)


def _blinks(eyes: np.ndarray, open_level: float) -> int:
    """How many separate dips below half the open level."""
    shut = eyes < 0.5 * open_level
    return int(np.sum(shut[1:] & ~shut[:-1]) + shut[0])


def test_speak_follows_the_mouth_targets(default_clip):
    planner = MotionPlanner(default_clip, seed=3)
    targets = _speech_targets(300)
    frames = planner.speak(targets)
    assert frames.dtype == np.int64 and frames.shape == (300,)
    picked = default_clip.mouth[frames]
    assert np.corrcoef(picked[:, 0], targets[:, 0])[0, 1] > 0.9
    assert np.mean(np.abs(picked[:, 0] - targets[:, 0])) < 0.12
    rounded = targets[:, 2] > 0.4
    assert picked[rounded, 2].mean() > picked[~rounded, 2].mean() + 0.1


def test_head_never_jumps_across_calls(default_clip):
    planner = MotionPlanner(default_clip, seed=1)
    path = [planner.idle(60), planner.speak(_speech_targets(120, 1)), planner.idle(1), planner.idle(40)]
    planner.reset_to_idle()
    path += [planner.idle(30), planner.speak(_speech_targets(80, 2)), planner.idle(200)]
    frames = np.concatenate(path)
    steps = planner.steps[frames[:-1], frames[1:]]
    assert steps.max() <= planner.settings.max_pose_step
    assert np.count_nonzero(steps) >= 3            # the head does move


def test_idle_blinks_keeps_the_mouth_closed_and_drifts(default_clip):
    planner = MotionPlanner(default_clip, seed=0)
    frames = planner.idle(10 * FPS)
    eyes = default_clip.eyes[frames]
    assert 2 <= _blinks(eyes, planner.eye_open) <= 4
    assert default_clip.mouth[frames, 0].max() <= 0.1
    poses = default_clip.pose[frames]
    assert np.ptp(poses[:, 0]) > 1.0 or np.ptp(poses[:, 1]) > 1.0   # some head motion, in pixels


def test_blinks_continue_while_speaking(default_clip):
    planner = MotionPlanner(default_clip, seed=2)
    frames = planner.speak(_speech_targets(12 * FPS))
    assert _blinks(default_clip.eyes[frames], planner.eye_open) >= 2


def test_idle_is_the_same_in_any_chunking(default_clip):
    whole = MotionPlanner(default_clip, seed=5).idle(120)
    chunked = MotionPlanner(default_clip, seed=5)
    pieces = np.concatenate([chunked.idle(1) for _ in range(50)] + [chunked.idle(70)])
    np.testing.assert_array_equal(pieces, whole)


def test_barge_in_closes_the_mouth_from_the_frame_on_screen(default_clip):
    planner = MotionPlanner(default_clip, seed=4)
    spoken = planner.speak(np.tile([[1.0, 0.5, 0.0]], (50, 1)).astype(np.float32))
    on_screen = int(spoken[20])
    assert default_clip.mouth[on_screen, 0] > 0.8
    planner.reset_to_idle(current=on_screen)
    after = planner.idle(10)
    assert planner.steps[on_screen, after[0]] <= planner.settings.max_pose_step
    opening = default_clip.mouth[after, 0]
    assert opening[0] > 0.2                         # eases shut rather than snapping
    assert np.all(opening[planner.settings.ease_frames:] <= 0.1)


def test_bad_targets_are_refused(default_clip):
    planner = MotionPlanner(default_clip)
    with pytest.raises(ValueError, match=r"\[F, 3\]"):
        planner.speak(np.zeros((10, 2), np.float32))
    assert planner.speak(np.zeros((0, 3), np.float32)).shape == (0,)


def test_a_tighter_step_limit_is_respected(default_clip):
    settings = MotionSettings(max_pose_step=0.08)
    planner = MotionPlanner(default_clip, seed=7, settings=settings)
    frames = np.concatenate([planner.idle(300), planner.speak(_speech_targets(100))])
    assert planner.steps[frames[:-1], frames[1:]].max() <= 0.08


def test_no_jump_even_when_the_best_mouths_are_far_apart(default_clip):
    """Closed mouths only in one pose, open ones only in the opposite pose: the planner must not hop."""
    specs = frame_specs()
    keep = [i for i, s in enumerate(specs) if s.eyes == 1.0 and (
        (s.pose == 1 and s.opening <= 0.25) or (s.pose == 4 and s.opening >= 0.75) or (s.pose == 0 and s.opening == 0.5))]
    clip = DrivingClip.from_landmarks(default_clip.frames[keep], default_clip.landmarks[keep])
    planner = MotionPlanner(clip, seed=0)
    far = planner.steps.max()
    assert far > planner.settings.max_pose_step          # the hop exists and would pay off unconstrained
    targets = np.tile(np.array([[0.0, 0.5, 0.0]] * 6 + [[1.0, 0.5, 0.0]] * 6, np.float32), (10, 1))
    frames = planner.speak(targets)
    assert planner.steps[frames[:-1], frames[1:]].max() <= planner.settings.max_pose_step
    assert np.corrcoef(clip.mouth[frames, 0], targets[:, 0])[0, 1] > 0.5   # still as close as it can get


def test_a_long_clip_is_searched_with_a_beam_that_finds_the_exact_plan(default_clip):
    """A custom avatar's clip has about a thousand frames; the beam search finds what the exact one does
    (measured: beams of 64 and more agree on every frame here, a beam of 8 on 28%)."""
    rng = np.random.default_rng(0)
    landmarks = np.concatenate([default_clip.landmarks + rng.normal(0, 0.3, default_clip.landmarks.shape)
                                for _ in range(8)]).astype(np.float32)
    frames = np.repeat(default_clip.frames[:1], len(landmarks), axis=0)       # the planner only reads landmarks
    clip = DrivingClip.from_landmarks(frames, landmarks)
    assert len(clip) > max(4 * MotionSettings().beam, MotionSettings().exact_up_to)    # searched with the beam
    targets = _speech_targets(200, seed=1)
    plans = [MotionPlanner(clip, seed=2, settings=MotionSettings(beam=beam)).speak(targets)
             for beam in (MotionSettings().beam, len(clip))]                   # the beam, and exact
    assert np.mean(plans[0] == plans[1]) >= 0.95


def test_idle_steers_onto_another_planners_frame_and_follows_it_without_a_jump(default_clip):
    ours, shared = MotionPlanner(default_clip, seed=3), MotionPlanner(default_clip, seed=4)
    stream = shared.idle(10 * FPS)                     # another listener's frames (the shared idle stream)
    mine = list(ours.idle(2 * FPS)) + list(ours.speak(_speech_targets(40, 3)))
    join = 5 * FPS
    assert ours.idle_towards(join - len(mine) + 1, int(stream[join]))
    mine += list(ours.idle(join - len(mine)))          # our own frames until the stream's frame at `join`
    for index in stream[join:join + 2 * FPS]:          # then the stream's frames, shown in place of ours
        ours.follow(int(index))
        mine.append(int(index))
    mine += list(ours.speak(_speech_targets(30, 5))) + list(ours.idle(FPS))   # a reply continues from there
    frames = np.asarray(mine)
    assert ours.steps[frames[:-1], frames[1:]].max() <= ours.settings.max_pose_step
    assert default_clip.mouth[frames[2 * FPS + 40:join], 0].max() <= 0.15         # listening on the way in
    far = int(np.argmax(ours.steps[ours.current]))
    assert not ours.idle_towards(1, far) and ours.idle_towards(2, ours.current) is True   # out of reach: False
