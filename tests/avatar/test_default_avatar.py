"""The generated default avatar: shape of the clip, real face detection on it, mouths and blinks as intended."""
from __future__ import annotations

import face_recognition
import numpy as np
import pytest

from avatar import default_avatar
from avatar.default_avatar import SOURCE, frame_specs, load_default_clip
from avatar.driving import DrivingClip, eye_openness, landmarks_68, mouth_descriptors

FACE_BOX = (76, 265, 166, 175)   # (top, right, bottom, left) of the face in the source photo


def _measure(frame: np.ndarray) -> np.ndarray | None:
    """68 landmarks of the most confident face, when it is the avatar's (not the suit's mission patch)."""
    boxes = face_recognition.face_locations(frame, number_of_times_to_upsample=1)
    if not boxes:
        return None
    top, right, bottom, left = boxes[0]
    cx, cy = (left + right) / 2, (top + bottom) / 2
    if not (FACE_BOX[3] - 20 < cx < FACE_BOX[1] + 20 and FACE_BOX[0] - 20 < cy < FACE_BOX[2] + 20):
        return None
    return landmarks_68(face_recognition.face_landmarks(frame, [boxes[0]])[0])


def _index(pose: int, opening: float, shape: str = "neutral", eyes: float = 1.0) -> int:
    specs = frame_specs()
    return next(i for i, s in enumerate(specs)
                if (s.pose, s.opening, s.shape, s.eyes) == (pose, opening, shape, eyes))


def test_clip_shape(default_clip):
    n = len(frame_specs())
    assert 100 <= n <= 200
    assert default_clip.frames.shape == (n, 512, 512, 3) and default_clip.frames.dtype == np.uint8
    assert default_clip.landmarks.shape == (n, 68, 2)
    assert default_clip.source == SOURCE
    np.testing.assert_allclose(default_clip.mouth, mouth_descriptors(default_clip.landmarks), atol=1e-6)


def test_faces_found_on_sampled_frames(default_clip):
    sample = range(0, len(default_clip), 5)
    found = sum(_measure(default_clip.frames[i]) is not None for i in sample)
    assert found >= 0.95 * len(sample)


@pytest.mark.parametrize("pose", [0, 3])
def test_measured_mouth_opening_follows_intended_opening(default_clip, pose):
    measured = []
    for opening in (0.0, 0.25, 0.5, 0.75, 1.0):
        lm = _measure(default_clip.frames[_index(pose, opening)])
        assert lm is not None
        measured.append(mouth_descriptors(lm)[0])
    assert np.all(np.diff(measured) > 0), measured
    assert measured[-1] - measured[0] > 0.6


def test_stored_descriptors_follow_the_specs(default_clip):
    specs = frame_specs()
    for pose in range(3):
        for shape in ("neutral", "wide", "round"):
            openings = [default_clip.mouth[_index(pose, o, shape), 0] for o in (0.0, 0.25, 0.5, 0.75, 1.0)]
            assert np.all(np.diff(openings) > 0.1)
    rest = _index(0, 0.0)
    assert default_clip.mouth[_index(0, 0.0, "wide"), 1] > default_clip.mouth[rest, 1]
    assert default_clip.mouth[_index(0, 0.5, "round"), 2] > default_clip.mouth[_index(0, 0.5), 2] + 0.2
    closed_eyes = [i for i, s in enumerate(specs) if s.eyes == 0.0]
    assert np.all(default_clip.eyes[closed_eyes] < 0.1)


def test_blink_frames_have_smaller_measured_eye_openness(default_clip):
    for pose in (0, 4):
        levels = [eye_openness(_measure(default_clip.frames[_index(pose, 0.0, eyes=e)])) for e in (1.0, 0.45, 0.0)]
        assert levels[0] > levels[1] > levels[2], levels
        assert levels[0] - levels[2] > 0.4


def test_cache_regenerates_when_stale_or_corrupt_and_is_reused(tmp_path, default_clip, monkeypatch):
    calls = []

    def fake_generate() -> DrivingClip:   # the caching logic under test; generation is covered above
        calls.append(1)
        return DrivingClip.from_landmarks(default_clip.frames[:2, ::8, ::8], default_clip.landmarks[:2] / 8,
                                          source=SOURCE)

    monkeypatch.setattr(default_avatar, "generate_default_clip", fake_generate)
    path = tmp_path / "default.npz"
    DrivingClip.from_landmarks(default_clip.frames[:1, ::8, ::8], default_clip.landmarks[:1] / 8,
                               source="an older generator").save(path)
    assert len(load_default_clip(tmp_path)) == 2 and len(calls) == 1       # stale: regenerated
    stamp = path.stat().st_mtime_ns
    assert load_default_clip(tmp_path).source == SOURCE and len(calls) == 1  # fresh: read back
    assert path.stat().st_mtime_ns == stamp
    path.write_bytes(path.read_bytes()[:1000])
    assert len(load_default_clip(tmp_path)) == 2 and len(calls) == 2       # corrupt: regenerated
    assert len(DrivingClip.load(path)) == 2

