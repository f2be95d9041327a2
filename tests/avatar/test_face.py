"""Face alignment, the identity face model and blending back."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from avatar.align import align, align_transform, face_roi
from avatar.face import FACE_SIZE, IdentityFaceModel, blend_into


def blend(frame, face, mask, transform):
    """A blended copy of `frame`, leaving `frame` as it was."""
    out = frame.copy()
    blend_into(out, face, mask, transform)
    return out


def _apply(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ transform[:, :2].T + transform[:, 2]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def test_alignment_levels_the_eyes_and_ignores_where_the_face_was(default_clip):
    lm = default_clip.landmarks[0].astype(np.float64)
    # The same face rotated by 20 degrees, scaled by 1.4 and moved: its aligned landmarks must not change.
    moved = cv2.getRotationMatrix2D((200.0, 150.0), 20.0, 1.4)
    moved[:, 2] += (30.0, -12.0)
    a = _apply(align_transform(lm, FACE_SIZE), lm)
    b = _apply(align_transform(_apply(moved, lm), FACE_SIZE), _apply(moved, lm))
    np.testing.assert_allclose(a, b, atol=0.05)
    eyes = np.stack([a[36:42].mean(0), a[42:48].mean(0)])
    assert abs(eyes[0, 1] - eyes[1, 1]) < 0.5                                    # level
    assert 0.2 * FACE_SIZE < eyes[1, 0] - eyes[0, 0] < 0.35 * FACE_SIZE        # FFHQ: about a quarter
    assert np.all((a > 0) & (a < FACE_SIZE))                                    # the whole face is inside


def test_identity_model_returns_faces_and_a_soft_face_mask():
    model = IdentityFaceModel()
    faces = np.random.default_rng(0).integers(0, 255, (2, FACE_SIZE, FACE_SIZE, 3), dtype=np.uint8)
    out, masks = model(faces)
    np.testing.assert_array_equal(out, faces)
    assert masks.shape == (2, FACE_SIZE, FACE_SIZE) and masks.dtype == np.float32
    centre, corner = masks[0, FACE_SIZE * 6 // 10, FACE_SIZE // 2], masks[0, 2, 2]
    assert centre > 0.99 and corner == 0.0
    assert np.any((masks[0] > 0.1) & (masks[0] < 0.9))                          # feathered, not a hard edge
    with pytest.raises(ValueError, match="aligned faces"):
        model(faces[:, :100])


def test_identity_round_trip_reproduces_the_frame(default_clip):
    frame = default_clip.frames[12]
    transform = align_transform(default_clip.landmarks[12], FACE_SIZE)
    faces, masks = IdentityFaceModel()(align(frame, transform, FACE_SIZE)[None])
    out = blend(frame, faces[0], masks[0], transform)
    assert _psnr(out, frame) > 45
    x0, y0, x1, y1 = face_roi(transform, FACE_SIZE, frame.shape)
    assert _psnr(out[y0:y1, x0:x1], frame[y0:y1, x0:x1]) > 38
    assert out is not frame and np.shares_memory(out, frame) is False


def test_blend_puts_a_new_face_only_where_the_mask_is(default_clip):
    frame = default_clip.frames[0]
    transform = align_transform(default_clip.landmarks[0], FACE_SIZE)
    green = np.zeros((FACE_SIZE, FACE_SIZE, 3), np.uint8)
    green[..., 1] = 255
    mask = IdentityFaceModel().mask
    out = blend(frame, green, mask, transform)
    nose = np.round(default_clip.landmarks[0, 30]).astype(int)
    assert tuple(out[nose[1], nose[0]]) == (0, 255, 0)
    np.testing.assert_array_equal(out[:40], frame[:40])                           # far from the face
    np.testing.assert_array_equal(blend(frame, green, np.zeros_like(mask), transform), frame)
