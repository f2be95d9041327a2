"""DrivingClip: descriptors from landmarks, the .npz round trip and its errors, and clips from real video."""
from __future__ import annotations

import face_recognition
import numpy as np
import pytest
from face_recognition.api import _raw_face_landmarks
from skimage import data

from avatar.driving import (CLOSED_MOUTH, OPEN_MOUTH, ClipError, DrivingClip, MultipleFacesError, NoFaceError,
                            eye_openness, format_mouth_range, landmarks_68, mouth_descriptors, mouth_range)


def _small_clip(default_clip: DrivingClip, n: int = 4) -> DrivingClip:
    frames = default_clip.frames[:n, ::8, ::8].copy()
    return DrivingClip.from_landmarks(frames, default_clip.landmarks[:n] / 8, source="test")


def test_save_load_roundtrip(tmp_path, default_clip):
    clip = _small_clip(default_clip)
    path = tmp_path / "sub" / "clip.npz"
    clip.save(path)
    loaded = DrivingClip.load(path)
    for name in ("frames", "landmarks", "mouth", "pose", "eyes"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(clip, name))
    assert loaded.source == "test"
    assert [p.name for p in path.parent.iterdir()] == ["clip.npz"]   # no temporary file left behind


@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing_array", "missing_file"])
def test_load_reports_a_bad_file(tmp_path, default_clip, damage):
    path = tmp_path / "clip.npz"
    _small_clip(default_clip).save(path)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a zip file at all" * 10)
    elif damage == "missing_array":
        np.savez(path, frames=np.zeros((1, 4, 4, 3), np.uint8))
    else:
        path.unlink()
    with pytest.raises(ClipError, match="clip"):
        DrivingClip.load(path)


def test_inconsistent_arrays_are_refused(default_clip):
    clip = _small_clip(default_clip)
    with pytest.raises(ClipError, match="mouth"):
        DrivingClip(clip.frames, clip.landmarks, clip.mouth[:2], clip.pose, clip.eyes)


def test_landmarks_from_dict_and_dlib_shape_agree():
    image = data.astronaut()
    box = [(76, 265, 166, 175)]
    from_dict = landmarks_68(face_recognition.face_landmarks(image, box)[0])
    from_shape = landmarks_68(_raw_face_landmarks(image, box)[0])
    np.testing.assert_array_equal(from_dict, from_shape)
    with pytest.raises(ClipError):
        landmarks_68({"chin": [(0, 0)] * 17})


def test_mouth_descriptors_follow_the_lips(default_clip):
    closed = default_clip.landmarks[0].copy()
    openings = []
    for drop in (0.0, 4.0, 8.0, 12.0):
        lm = closed.copy()
        lm[[55, 56, 57, 58, 59, 65, 66, 67], 1] += drop
        openings.append(mouth_descriptors(lm)[0])
    assert np.all(np.diff(openings) > 0.05)
    wide = closed.copy()
    centre = wide[48:68, 0].mean()
    wide[48:68, 0] = centre + (wide[48:68, 0] - centre) * 1.2
    assert mouth_descriptors(wide)[1] > mouth_descriptors(closed)[1] + 0.05
    batch = mouth_descriptors(default_clip.landmarks[:5])
    assert batch.shape == (5, 3) and np.all((batch >= 0) & (batch <= 1))
    shut = closed.copy()
    shut[[37, 38, 43, 44], 1] = shut[[41, 40, 47, 46], 1]
    assert eye_openness(shut) < 0.1 < eye_openness(closed)


def test_mouth_range_counts_closed_and_open_mouths(default_clip):
    closed = default_clip.landmarks[0].copy()
    faces = []
    for drop in np.linspace(0.0, 16.0, 20):                  # the lower lip and jaw drop step by step
        lm = closed.copy()
        lm[[55, 56, 57, 58, 59, 65, 66, 67], 1] += drop
        faces.append(lm)
    opening = mouth_descriptors(np.stack(faces))[:, 0]
    summary = mouth_range(np.stack(faces))
    assert summary["closed_mouth"] == int((opening <= CLOSED_MOUTH).sum()) > 0
    assert summary["open_mouth"] == int((opening >= OPEN_MOUTH).sum()) > 0
    assert summary["mouth_opening_p5"] < summary["mouth_opening_p50"] < summary["mouth_opening_p95"]
    narrow = mouth_range(np.stack(faces[8:12]))              # the middle openings only: neither closed nor wide
    assert narrow["mouth_opening_p95"] - narrow["mouth_opening_p5"] < 0.3 * (
        summary["mouth_opening_p95"] - summary["mouth_opening_p5"])
    assert mouth_range(np.zeros((0, 68, 2)))["mouth_opening_p50"] is None
    assert f"{summary['closed_mouth']} faces with the mouth closed" in format_mouth_range(summary)


def test_from_video_reads_landmarks(videos):
    clip = DrivingClip.from_video(videos / "extra_man_suit_5s.mp4", max_frames=3)
    assert clip.frames.shape[0] == 3 and clip.frames.dtype == np.uint8
    h, w = clip.frames.shape[1:3]
    assert np.all((clip.landmarks >= 0) & (clip.landmarks < [w, h]))
    assert np.all((clip.mouth >= 0) & (clip.mouth <= 1)) and np.all(clip.eyes > 0)


def test_from_video_refuses_frames_without_exactly_one_face(videos):
    with pytest.raises((NoFaceError, MultipleFacesError), match="frame"):
        DrivingClip.from_video(videos / "multi_person_stage_10s.mp4", max_frames=40)
