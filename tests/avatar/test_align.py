"""The one crop rule: synth prepare crops a detected face exactly as the renderer aligns it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import synth.prepare as prep
from avatar.align import AlignedFace, align, align_transform
from avatar.default_avatar import load_default_clip
from avatar.detect import find_faces
from avatar.driving import DrivingClip
from avatar.face import FACE_SIZE, IdentityFaceModel
from avatar.render import Renderer

SUBJECT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "videos" / "subject_A_man_indoor_60s.mp4"


def _real_frame() -> np.ndarray:
    """A frame of the shared subject footage when it is present, else the built-in avatar's first frame cropped to
    the head (dlib also finds a 'face' on the astronaut's suit, which prepare would count as a second person)."""
    if not SUBJECT.is_file():
        return np.ascontiguousarray(load_default_clip().frames[0][:320, 96:416])
    return next(frame for _, frame in prep._frames(SUBJECT, 30) if len(find_faces(frame, embed=False)) == 1)


class _Recorder:
    """Stands in for prepare's dataset writer and the renderer's face model: keeps what they are given."""

    def __init__(self) -> None:
        self.crops: list[np.ndarray] = []

    def add(self, image: np.ndarray, meta: dict) -> None:
        self.meta = meta

    def __call__(self, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.crops.append(faces[0].copy())
        return IdentityFaceModel(FACE_SIZE)(faces)


def test_prepare_and_renderer_crop_a_real_face_with_one_matrix(monkeypatch):
    frame = _real_frame()
    face = find_faces(frame)[0]
    crops: list[AlignedFace] = []
    original = prep.align_face
    monkeypatch.setattr(prep, "align_face", lambda *a: crops.append(original(*a)) or crops[-1])
    writer = _Recorder()
    counts = dict.fromkeys(prep.COUNT_KEYS, 0)
    prep._keep_frame(frame, 0, "frame", face.embedding, prep.PrepareOptions(size=FACE_SIZE), writer, counts)
    assert counts["kept"] == 1 and len(crops) == 1
    prepared = crops[0].matrix                                                         # prepare's crop

    clip = DrivingClip.from_landmarks(frame[None], face.landmarks[None])
    model = _Recorder()
    renderer = Renderer(clip, model, label="", face_size=FACE_SIZE)
    renderer.render(0)
    rendered = renderer._transforms[0]                                                 # the renderer's alignment
    assert np.allclose(prepared, rendered) and np.allclose(prepared, align_transform(face.landmarks, FACE_SIZE))
    np.testing.assert_array_equal(model.crops[0], align(frame, prepared, FACE_SIZE))
    eyes = np.array(writer.meta["landmarks"])[36:48, 1]
    assert np.ptp(eyes) < 0.1 * FACE_SIZE                                              # a level, aligned face


def test_align_transform_refuses_other_than_68_points():
    with pytest.raises(ValueError, match="68 landmarks"):
        align_transform(np.zeros((5, 2)), 64)
