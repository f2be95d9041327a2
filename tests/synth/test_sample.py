"""Sample selection: the expression descriptor, farthest-point sampling, and choosing varied subject faces from
candidates that also hold non-faces and someone else (real aligned faces stand in for a trained GAN)."""
from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
from scipy.spatial.distance import pdist

from avatar.driving import mouth_range
from synth.dataset import load_images, load_metadata
from synth.expression import expression_descriptor, farthest_point_sampling, monotone_subset, variety_descriptor
from synth.metrics.recognition import reference_embedding
from synth.sample import METADATA_FILE, SampleError, SampleOptions, image_grid, select_varied, write_faces
from footage import STILLS, need


def _similarity(points, angle, scale, shift):
    c, s = np.cos(angle), np.sin(angle)
    return points @ (scale * np.array([[c, s], [-s, c]])) + shift


def test_descriptor_ignores_position_rotation_and_scale_but_not_expression(subject_dataset):
    lm = np.array(load_metadata(subject_dataset)[0]["landmarks"])
    d = expression_descriptor(lm)
    assert d.shape == (136,)
    np.testing.assert_allclose(expression_descriptor(_similarity(lm, 0.4, 2.5, (30, -7))), d, atol=1e-9)
    opened = lm.copy()
    opened[57:60, 1] += 5                                         # lower lip drops: the mouth opens
    assert np.linalg.norm(expression_descriptor(opened) - d) > 0.1


def test_farthest_point_sampling_spreads_out():
    points = np.array([[0.0], [1], [2], [3], [10]])
    assert farthest_point_sampling(points, 2).tolist() == [4, 0]
    assert farthest_point_sampling(points, 3).tolist() == [4, 0, 3]
    assert sorted(farthest_point_sampling(points, 9).tolist()) == [0, 1, 2, 3, 4]
    assert len(farthest_point_sampling(points, 0)) == 0


def test_variety_descriptor_weighs_expression_and_embedding_alike(subject_dataset, rng):
    lm = np.array(load_metadata(subject_dataset)[0]["landmarks"])
    landmarks = lm + rng.normal(0, 2.0, (30, 68, 2))              # 30 shapes around one face
    embeddings = rng.normal(0, 1.0, (30, 128)) * 7.0              # any scale: each is made unit length
    d = variety_descriptor(landmarks, embeddings)
    assert d.shape == (30, 264)
    for half in (d[:, :136], d[:, 136:]):
        rms = np.sqrt(np.mean(np.sum((half - half.mean(0)) ** 2, axis=1)))
        assert rms == pytest.approx(1.0)
    scaled = variety_descriptor(landmarks, embeddings * 3)        # the embedding's length does not matter
    np.testing.assert_allclose(scaled, d, atol=1e-9)


def test_monotone_subset_is_the_tight_cluster(rng):
    cluster = rng.normal(0, 0.1, (20, 3))
    spread = rng.normal(0, 5.0, (20, 3))
    picked = monotone_subset(np.concatenate([cluster, spread]), 10)
    assert (picked < 20).all()


@pytest.fixture(scope="module", autouse=True)
def faces_found_once():
    """Each candidate image is looked at (detection, landmarks, embedding) once in this module, however many
    selections take it: the real pipeline's result, kept by image."""
    import synth.sample

    found, look = {}, synth.sample.find_face_in_small

    def once(image):
        if id(image) not in found:
            found[id(image)] = (image, look(image))        # the image is kept, so its id stays its own
        return found[id(image)][1]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(synth.sample, "find_face_in_small", once)
        yield


@pytest.fixture(scope="module")
def candidates(subject_dataset, subject_scan):
    """24 subject faces (every 12th dataset image), 3 non-faces, and Biden's face, interleaved."""
    images = load_images(subject_dataset)
    faces = [images[i] for i in range(0, len(images), 12)][:24]
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (64, 64, 3), np.uint8), np.full((64, 64, 3), 128, np.uint8),
             np.asarray(PIL.Image.fromarray(rng.integers(0, 256, (8, 8, 3), np.uint8)).resize((64, 64)))]
    biden = PIL.Image.open(need(STILLS / "biden.jpg")).convert("RGB")
    w, h = biden.size
    other = np.asarray(biden.crop((w * 0.25, h * 0.1, w * 0.75, h * 0.1 + w * 0.5)).resize((64, 64)))
    mixed = faces[:8] + noise[:1] + faces[8:16] + [other] + noise[1:] + faces[16:]
    return mixed, faces, reference_embedding(subject_scan)


def test_selection_drops_non_faces_and_someone_else_and_keeps_varied_faces(candidates):
    mixed, faces, reference = candidates
    sel = select_varied(iter(mixed), reference, n=8, progress=False)
    assert sel.counts == {"candidates": 28, "no_face": 3, "not_matching": 1, "matching": 24, "nearest": 24,
                          "kept": 8}
    assert len(sel.images) == 8 and len(set(sel.indices)) == 8
    subject_ids = {id(f) for f in faces}
    assert all(id(mixed[i]) in subject_ids for i in sel.indices)
    # Farthest-point sampling spreads the expressions wider than the first 8 matching faces do.
    chosen = expression_descriptor(np.stack(sel.landmarks))
    first = select_varied(iter(faces[:8]), reference, n=8, progress=False)
    baseline = expression_descriptor(np.stack(first.landmarks))
    assert pdist(chosen).mean() > pdist(baseline).mean()


def test_nearest_share_chooses_among_the_faces_nearest_the_subject(candidates):
    mixed, _, reference = candidates
    every = select_varied(iter(mixed), reference, n=24, progress=False)           # all 24 matching faces
    cut = sorted(every.distances)[11]                                              # the 12th nearest
    near = select_varied(iter(mixed), reference, n=8, progress=False, nearest=0.5)
    assert near.counts["nearest"] == 12 and near.counts["kept"] == 8
    assert max(near.distances) <= cut
    spread = select_varied(iter(mixed), reference, n=8, progress=False)
    assert max(spread.distances) > cut               # variety alone reaches beyond the nearest half
    assert np.mean(near.distances) < np.mean(spread.distances)
    assert select_varied(iter(mixed), reference, n=20, progress=False, nearest=0.1).counts["nearest"] == 20
    with pytest.raises(SampleError, match="nearest"):
        SampleOptions(nearest=0)


def test_selection_keeps_all_when_too_few_pass(candidates):
    mixed, _, reference = candidates
    sel = select_varied(iter(mixed[7:11]), reference, n=10, progress=False)      # face, noise, face, face
    assert sel.counts["kept"] == sel.counts["matching"] == 3 and sel.counts["no_face"] == 1


def test_written_faces_and_metadata(candidates, tmp_path):
    mixed, _, reference = candidates
    sel = select_varied(iter(mixed[:5]), reference, n=3, progress=False)
    write_faces(sel, tmp_path / "faces", {"psi": 0.7})
    meta = json.loads((tmp_path / "faces" / METADATA_FILE).read_text())
    assert meta["count"] == 3 and meta["counts"] == sel.counts and meta["psi"] == 0.7
    assert [e["file"] for e in meta["images"]] == ["00000.png", "00001.png", "00002.png"]
    np.testing.assert_array_equal(np.asarray(PIL.Image.open(tmp_path / "faces" / "00001.png")), sel.images[1])
    assert len(meta["images"][0]["landmarks"]) == 68
    assert meta["mouth"] == mouth_range(np.stack(sel.landmarks)) and meta["mouth"]["mouth_opening_p50"] > 0
    with pytest.raises(SampleError, match="already holds"):
        write_faces(sel, tmp_path / "faces", {})


def test_sample_options_and_grid():
    assert SampleOptions(n=10, oversample=4).candidates == 40
    with pytest.raises(SampleError):
        SampleOptions(n=0)
    for psi in (-0.5, 3.0, float("nan")):
        with pytest.raises(SampleError, match="truncation psi"):
            SampleOptions(psi=psi)
    assert SampleOptions(psi=0.0).psi == 0.0 and SampleOptions(psi=1.5).psi == 1.5
    grid = image_grid([np.full((4, 4, 3), i, np.uint8) for i in range(10)], cols=4)
    assert grid.shape == (12, 16, 3) and grid[4, 0, 0] == 4 and grid[8:, 8:].max() == 0
