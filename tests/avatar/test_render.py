"""The renderer: identity face model round trip, the visible AI label, and that the face model is used."""
from __future__ import annotations

import numpy as np
import pytest

from avatar.face import IdentityFaceModel
from avatar.render import Renderer


@pytest.fixture(scope="module")
def renderer(default_clip) -> Renderer:
    return Renderer(default_clip, IdentityFaceModel())


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


@pytest.mark.parametrize("index", [0, 12, 60, 131])
def test_identity_render_matches_the_driving_frame_outside_the_label(renderer, default_clip, index):
    out = renderer.render(index)
    assert out.shape == default_clip.frames[index].shape and out.dtype == np.uint8
    x0, y0, x1, y1 = renderer.label_box()
    keep = np.ones(out.shape[:2], bool)
    keep[y0:y1, x0:x1] = False
    assert _psnr(out[keep], default_clip.frames[index][keep]) > 45


def test_the_label_is_drawn(renderer, default_clip):
    out = renderer.render(0)
    x0, y0, x1, y1 = renderer.label_box()
    assert x0 < 20 and y1 > out.shape[0] - 20                        # bottom-left corner
    patch, source = out[y0:y1, x0:x1].astype(int), default_clip.frames[0][y0:y1, x0:x1].astype(int)
    assert np.mean(np.abs(patch - source)) > 20
    brightness = patch.mean(-1)
    assert (brightness > 200).sum() > 30 and (brightness < 80).mean() > 0.4   # white text on a dark box
    plain = Renderer(default_clip, IdentityFaceModel(), label="")
    assert plain.label_box() is None
    assert _psnr(plain.render(0), default_clip.frames[0]) > 45


def test_the_face_model_output_is_blended_in(default_clip):
    def negative(faces):                                            # any FaceModel: here, inverted faces
        return 255 - faces, IdentityFaceModel()(faces)[1]

    out = Renderer(default_clip, negative).render(0)
    frame = default_clip.frames[0]
    nose = np.round(default_clip.landmarks[0, 30]).astype(int)
    np.testing.assert_allclose(out[nose[1], nose[0]].astype(int), 255 - frame[nose[1], nose[0]].astype(int), atol=12)
    np.testing.assert_array_equal(out[:40], frame[:40])


def test_render_many_and_frame_size(renderer, default_clip):
    frames = [renderer.render(index) for index in (0, 1, 2)]
    assert len(frames) == 3 and renderer.frame_size == (512, 512)
    np.testing.assert_array_equal(frames[1], renderer.render(1))
    with pytest.raises(IndexError):
        renderer.render(len(default_clip))


def test_without_a_face_model_frames_are_shown_as_they_are_with_the_label(default_clip):
    renderer = Renderer(default_clip, None)                   # a baked avatar: its frames are final
    out = renderer.render(5)
    x0, y0, x1, y1 = renderer.label_box()
    outside = np.ones(out.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(out[outside], default_clip.frames[5][outside])
    assert not np.array_equal(out[y0:y1, x0:x1], default_clip.frames[5][y0:y1, x0:x1])
