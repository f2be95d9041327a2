"""The swap on real footage, as a user runs it: `avatar swap apply` with the smoke swap that the session's
`avatar build` trained (600 iterations, resumed after a kill) on subject_A's faces as src and the first 6 s of
driving_B as dst (skips without the footage). A smoke swap gives a blurry face that the detector finds in every
frame. (`avatar swap train` itself is run from the command line in test_swap_runs.py.)
"""
from __future__ import annotations

import subprocess
import sys

import av
import numpy as np

from footage import DRIVING, REPO

FRAMES = 60                                        # the first 2 s of driving_B


def test_smoke_train_and_apply_on_real_footage(built_avatar, tmp_path):
    from avatar.detect import find_faces

    run, out = built_avatar.work / "swap" / "run", tmp_path / "swapped.mp4"
    avatar = [sys.executable, "-m", "avatar.cli", "swap"]
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
