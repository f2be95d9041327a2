"""The whole offline path on real footage: prepare -> train (smoke preset) -> sample -> metrics, through the CLI."""
from __future__ import annotations

import json
import math

import pytest

import numpy as np

from synth.cli import main as synth_main
from synth.sample import gan_candidates

pytest.importorskip("synth.train", reason="synth.train (the StyleGAN2 training half) is not importable yet")

TABLE2_KEYS = ["is_mean", "is_var", "fid", "openface_mean", "openface_var", "fr_matching", "fr_not_matching",
               "fr_not_faces"]


@pytest.mark.slow
def test_prepare_train_sample_metrics(subject_dataset, tmp_path, capsys):
    run, faces, table = tmp_path / "run", tmp_path / "faces", tmp_path / "table.json"

    assert synth_main(["prepare", str(subject_dataset.parent / "unused.mp4"), "--out", str(tmp_path / "x"),
                       "--quiet"]) == 2                                  # a missing video: a clear error
    assert "cannot read any of the videos: unused.mp4" in capsys.readouterr().err

    assert synth_main(["train", str(subject_dataset), "--preset", "smoke", "--out", str(run)]) == 0
    options = json.loads((run / "options.json").read_text())
    assert options["dataset"] == str(subject_dataset)
    # Candidate i comes from seed + i whatever the batching, so a sample can be regenerated exactly.
    by_two = list(gan_candidates(run, 5, psi=0.7, seed=3, batch=2))
    by_five = list(gan_candidates(run, 5, psi=0.7, seed=3, batch=5))
    assert by_two[0].shape == (32, 32, 3) and by_two[0].dtype == np.uint8
    assert all(np.abs(a.astype(int) - b).max() <= 1 for a, b in zip(by_two, by_five))
    assert np.abs(by_two[0].astype(int) - by_two[1]).mean() > 1

    # A smoke-trained generator draws blobs, so few candidates (often none) pass as the subject's face:
    # the exit status says so (1) and the counts still add up.
    status = synth_main(["sample", str(run), "--n", "4", "--oversample", "2", "--out", str(faces), "--quiet"])
    meta = json.loads((faces / "metadata.json").read_text())
    counts = meta["counts"]
    assert counts["candidates"] == 8
    assert counts["no_face"] + counts["not_matching"] + counts["matching"] == 8
    assert counts["kept"] == min(4, counts["matching"]) == meta["count"]
    assert status == (0 if counts["kept"] == 4 else 1)

    assert synth_main(["metrics", str(faces), "--real", str(subject_dataset), "--real-limit", "16",
                       "--json", str(table), "--quiet"]) == 0
    data = json.loads(table.read_text())
    assert all(k in data for k in TABLE2_KEYS)
    assert data["fr_matching"] + data["fr_not_matching"] + data["fr_not_faces"] == counts["kept"]
    if counts["kept"] >= 2:
        assert math.isfinite(data["fid"]) and data["fid"] > 0
    else:
        assert data["fid"] is None and "n/a" in data["notes"]["fid"]
    assert "Table 2" in capsys.readouterr().out
