"""The swap on real footage, as a user runs it: subject_A's faces as src, driving_B as dst (skips without it).

300 smoke iterations (about 30 s) are enough for a blurry face that the detector finds in every frame; 20 are not.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from build_support import DRIVING, REPO

FRAMES = 60                                        # the first 2 s of driving_B


@pytest.fixture(scope="module")
def subject_faces(subject_dataset, tmp_path_factory) -> Path:
    """subject_A prepared at 64 px on every 6th frame (the session's cached dataset), written as a FACES folder."""
    from synth.dataset import load_metadata
    from synth.sample import export_real_faces

    out = tmp_path_factory.mktemp("subject") / "faces"
    export_real_faces(subject_dataset, np.arange(len(load_metadata(subject_dataset))), out)
    return out


def test_smoke_train_and_apply_on_real_footage(subject_faces, tmp_path):
    from avatar.detect import find_faces

    run, out = tmp_path / "run", tmp_path / "swapped.mp4"
    avatar = [sys.executable, "-m", "avatar.cli", "swap"]
    train = subprocess.run(avatar + ["train", "--src", str(subject_faces), "--dst", str(DRIVING), "--out", str(run),
                                     "--preset", "smoke", "--iters", "300", "--dst-frames", str(FRAMES)],
                           capture_output=True, text=True, timeout=600, cwd=REPO)
    assert train.returncode == 0, train.stderr
    apply = subprocess.run(avatar + ["apply", str(run), "--video", str(DRIVING), "-o", str(out),
                                     "--frames", str(FRAMES)], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert apply.returncode == 0, apply.stderr
    with av.open(str(out)) as container:
        assert container.streams.audio, "the driving clip's audio is kept"
        samples = sum(f.samples for f in container.decode(audio=0))
        rate = container.streams.audio[0].rate
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == FRAMES
    assert abs(samples / rate - FRAMES / 30) < 0.1                        # audio as long as the video
    faces = [find_faces(f, upsample=0, embed=False) for f in frames]
    assert sum(len(found) == 1 for found in faces) >= 0.95 * FRAMES
    # The face was replaced: inside the driving face the output differs from the driving frame.
    from avatar.swap.data import read_frames
    driving = list(read_frames(DRIVING, FRAMES))
    changed = []
    for original, frame in zip(driving[::10], frames[::10]):
        lm = find_faces(original, upsample=0, embed=False)[0].landmarks
        (x0, y0), (x1, y1) = lm[17:48].min(0).astype(int), lm[17:48].max(0).astype(int)
        changed.append(np.abs(frame[y0:y1, x0:x1].astype(int) - original[y0:y1, x0:x1]).mean())
    assert min(changed) > 8
