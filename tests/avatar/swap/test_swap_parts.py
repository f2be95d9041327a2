"""The swap's parts on their own: model shapes, training steps, warp, colour transfer, masks and paste-back."""
from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from avatar.align import align_face, align_transform, apply_affine
from avatar.face import TEMPLATE_68, face_mask
from avatar.swap.augment import mouth_moved, random_warp_maps, training_sample
from avatar.swap.colour import histogram_match, lab_stats, rct
from avatar.swap.losses import dssim, identity_loss
from avatar.swap.merge import MergeOptions, merge_frame, smooth_along_time, swap_faces
from avatar.swap.model import PRESETS, PresetError, SwapModel, SwapPreset, get_preset
from avatar.swap.train import LOSS_KEYS, SwapTrainer


def test_model_shapes_for_every_preset():
    for name in PRESETS:
        preset = get_preset(name)
        if preset.resolution > 64:
            continue           # the GPU presets: same code, only bigger
        model = SwapModel(preset)
        x = torch.rand(2, 3, preset.resolution, preset.resolution)
        out = model(x, x)
        r = preset.resolution
        assert out["src"].shape == out["dst"].shape == (2, 3, r, r)
        assert out["src_mask"].shape == out["dst_mask"].shape == (2, 1, r, r)
        faces, masks = model.swap(x)
        assert faces.shape == (2, 3, r, r) and masks.shape == (2, 1, r, r)
        assert 0 <= float(faces.detach().min()) and float(faces.detach().max()) <= 1


def test_presets_round_trip_and_refuse_bad_values():
    preset = get_preset("cpu64")
    assert SwapPreset.from_dict(preset.to_dict()) == preset
    with pytest.raises(PresetError, match="unknown swap preset"):
        get_preset("huge")
    with pytest.raises(PresetError, match="multiple of 16"):
        SwapPreset("bad", resolution=40)
    with pytest.raises(PresetError, match="arch must be"):
        SwapPreset("bad", arch="xyz")
    stored = preset.to_dict()
    del stored["arch"]                                   # checkpoints written before LIAE existed
    assert SwapPreset.from_dict(stored).arch == "df" and hasattr(SwapModel(SwapPreset.from_dict(stored)), "inter")


def test_liae_swaps_through_the_shared_inter_block_only():
    model = SwapModel(replace(get_preset("smoke"), arch="liae"))
    x = torch.rand(2, 3, 32, 32)
    before, _ = model.swap(x)
    with torch.no_grad():
        for p in model.inter_b.parameters():
            p.add_(1.0)
    after, _ = model.swap(x)
    assert torch.equal(before, after)                    # the driving person's own block plays no part
    assert not torch.equal(model(x, x)["dst"], model(x, x)["src"])   # ...but it does in their reconstruction


def _batch(n: int, r: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, r), torch.linspace(-1, 1, r), indexing="ij")
    mask = ((xx ** 2 + yy ** 2) < 0.6).float().expand(n, 1, r, r)
    images = torch.rand(n, 3, 1, 1, generator=g) * (1 - 0.5 * (xx ** 2 + yy ** 2))
    return {"input": images, "target": images, "mask": mask, "eyes_mouth": mask * 0}


def test_a_few_smoke_steps_lower_the_loss():
    preset = replace(get_preset("smoke"), lr=1e-3)
    trainer = SwapTrainer(preset)
    src, dst = _batch(4, 32, 1), _batch(4, 32, 2)
    first = dict(zip(LOSS_KEYS, trainer.step(src, dst).tolist()))
    for _ in range(40):
        last = dict(zip(LOSS_KEYS, trainer.step(src, dst).tolist()))
    assert trainer.iter == 41
    assert last["loss_src"] < 0.7 * first["loss_src"] and last["loss_dst"] < 0.7 * first["loss_dst"]


def test_dssim_is_zero_for_equal_images_and_grows_with_difference():
    a = torch.rand(2, 3, 32, 32)
    assert float(dssim(a, a, 3)) == pytest.approx(0, abs=1e-5)
    assert float(dssim(a, a * 0.5, 3)) < float(dssim(a, torch.rand(2, 3, 32, 32), 3))
    terms = identity_loss(a, torch.ones(2, 1, 32, 32), a, torch.ones(2, 1, 32, 32), torch.ones(2, 1, 32, 32), 30)
    assert float(terms["total"]) == pytest.approx(0, abs=1e-4)


def test_random_warp_keeps_the_face_inside_the_crop():
    size = 64
    landmarks = TEMPLATE_68 * size
    face = face_mask(landmarks, size, feather=0.01)
    image = np.repeat((face[..., None] * 255).astype(np.uint8), 3, axis=2)
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:size, 0:size]
    border = (xs == 0) | (ys == 0) | (xs == size - 1) | (ys == size - 1)
    for _ in range(50):
        map_x, map_y = random_warp_maps(size, rng)
        assert np.allclose(map_x[border], xs[border], atol=0.51) and np.allclose(map_y[border], ys[border], atol=0.51)
        sample = training_sample(image, landmarks, rng)
        mass = sample.input[..., 0].astype(np.float32) / 255
        assert mass.sum() > 0.6 * face.sum()                          # the face did not leave the crop
        cy, cx = (np.array(np.nonzero(mass > 0.5)).mean(1) - np.array(np.nonzero(face > 0.5)).mean(1))
        assert abs(cx) < 0.2 * size and abs(cy) < 0.2 * size         # and moved only a little
        assert mass[border].sum() < 0.01 * mass.sum()                 # nor is it cut by the edges
        assert sample.mask.shape == (size, size) and sample.eyes_mouth.max() == 1.0
        # Input and target differ by the warp only: it bends the face (DFL: up to a quarter of its area), no more.
        target = sample.target[..., 0].astype(np.float32) / 255
        assert abs(mass.sum() - target.sum()) < 0.35 * target.sum()


def test_mouth_moves_shut_and_open_a_real_face_and_leave_the_eyes(default_clip):
    from avatar.detect import find_face_in_small
    from avatar.driving import CLOSED_MOUTH, mouth_descriptors

    i = int(np.argmin(np.abs(default_clip.mouth[:, 0] - 0.3)))              # a half-open mouth, like the GAN's
    aligned = align_face(default_clip.frames[i], default_clip.landmarks[i], 64)
    opening = lambda image: float(mouth_descriptors(find_face_in_small(image, embed=False).landmarks)[0])  # noqa: E731
    before = opening(aligned.image)
    shut, shut_lm = mouth_moved(aligned.image, aligned.landmarks, -1.0)
    wide, wide_lm = mouth_moved(aligned.image, aligned.landmarks, 0.3)
    start = float(mouth_descriptors(aligned.landmarks)[0])
    assert mouth_descriptors(shut_lm)[0] <= CLOSED_MOUTH
    assert abs(float(mouth_descriptors(wide_lm)[0]) - (start + 0.3)) < 0.05
    assert opening(shut) < before - 0.1 and opening(wide) > before + 0.1       # as the face detector sees them
    eyes = int(aligned.landmarks[36:48, 1].max()) + 2                           # above: nothing moved
    for image in (shut, wide):
        assert np.array_equal(image[:eyes], aligned.image[:eyes])
    np.testing.assert_array_equal(shut_lm[17:48], aligned.landmarks[17:48])       # brows, nose and eyes stay


def _textured(seed: int, mean: tuple[float, float, float], spread: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (64, 64, 3)).astype(np.float32), (0, 0), 2)
    noise /= noise.std()
    return np.clip(np.array(mean) + noise * spread, 0, 255).astype(np.uint8)


def test_colour_transfer_moves_lab_mean_and_std_to_the_target():
    image, target = _textured(0, (150, 110, 90), 12), _textured(1, (100, 120, 160), 25)
    mask = np.zeros((64, 64), np.float32)
    mask[8:56, 8:56] = 1
    before, goal = lab_stats(image, mask), lab_stats(target, mask)
    after = lab_stats(rct(image, target, mask, mask), mask)
    assert np.abs(after.mean - goal.mean).max() < 1.0
    assert np.abs(after.std - goal.std).max() < 0.1 * goal.std.max() + 0.5
    assert np.abs(before.mean - goal.mean).max() > 10          # it really had somewhere to go
    matched = lab_stats(histogram_match(image, target, mask, mask), mask)
    assert np.abs(matched.mean - goal.mean).max() < 1.5


def test_paste_back_puts_the_face_where_the_landmarks_are():
    frame = np.full((240, 320, 3), 40, np.uint8)
    # A face of 60 px eye distance, tilted 10 degrees, centred right of the middle.
    angle = np.radians(10)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = ((TEMPLATE_68 - 0.5) * 240) @ rot.T + [200, 120]

    def white_face(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.full_like(faces, 255), np.ones(faces.shape[:3], np.float32)

    out = merge_frame(frame, landmarks.astype(np.float32), white_face, 128, MergeOptions(colour="none"))
    changed = out[..., 0] > 150
    hull = np.zeros(frame.shape[:2], np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.round(landmarks[:27]).astype(np.int32)), 1)
    assert changed.sum() > 0.4 * hull.sum()
    assert (changed & (hull == 0)).sum() < 0.05 * changed.sum()     # nothing pasted outside the face
    ys, xs = np.nonzero(changed)
    centre = landmarks[:27].mean(0)
    assert abs(xs.mean() - centre[0]) < 8 and abs(ys.mean() - centre[1]) < 12
    assert (out[:, :100] == 40).all()                              # far from the face, untouched


def test_swap_crops_use_the_renderers_alignment(default_clip):
    from avatar.face import IdentityFaceModel
    from avatar.render import Renderer

    frames, landmarks = list(default_clip.frames[:3]), default_clip.landmarks[:3]
    keep = lambda faces: (faces, np.ones(faces.shape[:3], np.float32))  # noqa: E731
    swapped = swap_faces(frames, landmarks, keep, 256, MergeOptions())
    renderer = Renderer(default_clip, IdentityFaceModel())
    for k, face in enumerate(swapped):
        assert np.allclose(face.transform, renderer._transforms[k])         # the merge's crop is the renderer's
        aligned = align_face(frames[k], landmarks[k], 64)                    # ... and the training crop's
        assert np.allclose(aligned.matrix * [[4], [4]], face.transform)
        assert np.allclose(aligned.landmarks, apply_affine(landmarks[k], aligned.matrix), atol=1e-3)


def test_unusable_frames_are_held_from_the_nearest_swapped_one():
    from avatar.swap.data import VideoScan
    from avatar.swap.video import SwappedClip, _runs, held_frames

    usable = np.array([0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 0], bool)
    assert _runs(usable) == [(1, 3), (5, 6), (7, 10)]
    indices = np.flatnonzero(usable)
    frames = [np.full((2, 2, 3), i, np.uint8) for i in indices]          # each swapped frame shows its index
    scan = VideoScan(usable.astype(np.int16), np.zeros((11, 68, 2), np.float32), 25.0, (2, 2), "")
    held = [int(f[0, 0, 0]) for f in held_frames(SwappedClip(frames, indices, scan), 11)]
    assert held == [1, 1, 2, 2, 5, 5, 5, 7, 8, 9, 9]                     # no frame left without a swapped face


def test_temporal_smoothing_removes_jitter_and_keeps_the_track():
    rng = np.random.default_rng(0)
    track = np.linspace(0, 50, 100)[:, None] + rng.normal(0, 2, (100, 1))
    smooth = smooth_along_time(track, 1.5)
    jitter = lambda t: np.abs(np.diff(t, 2, axis=0)).mean()  # noqa: E731
    assert jitter(smooth) < 0.3 * jitter(track)
    assert np.abs(smooth - np.linspace(0, 50, 100)[:, None]).mean() < 1.5
    assert np.array_equal(smooth_along_time(track, 0), track.astype(np.float32))


def test_a_face_sets_identity_is_measured_against_both_references(avatar_faces, tmp_path):
    import shutil

    import PIL.Image

    from avatar.detect import find_face_in_small
    from avatar.files import image_files
    from avatar.swap.quality import face_set_identity

    folder = tmp_path / "faces"                                          # six of the fixture's faces
    folder.mkdir()
    for path in image_files(avatar_faces)[:6]:
        shutil.copy(path, folder)
    files = image_files(folder)
    embeddings = np.stack([find_face_in_small(np.asarray(PIL.Image.open(p).convert("RGB"))).embedding
                           for p in files])
    own, other = embeddings.mean(0), embeddings.mean(0) + 0.5       # the set's own face and one far from it
    mine = face_set_identity(folder, own, other)
    assert mine["src_faces"] == 6 and mine["src_closer_to_subject"] == 1.0
    assert mine["src_dist_to_subject"] < mine["src_dist_to_driver"]
    assert face_set_identity(folder, other, own)["src_closer_to_subject"] == 0.0
    PIL.Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(folder / "blank.png")   # no face: against
    assert face_set_identity(folder, own, other)["src_closer_to_subject"] == round(6 / 7, 4)
