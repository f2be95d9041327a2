"""Fixtures shared across test folders: one custom avatar built from real footage with `avatar build`, once.

The build runs as a user runs it (a subprocess of `python -m avatar.cli build`), on subject_A's prepared faces
(`--faces`, the dataset tests/synth caches) and the first 6 s of driving_B, with the `smoke` preset. It is
killed once during the swap stage and run again, so that the bundle every test uses is the product of a resumed
build. Skips where ../shared/data is absent.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from build_support import DRIVING, REPO, SUBJECT, SYNTH_CACHE, VIDEOS, BuiltAvatar, build_command, consent_files


@pytest.fixture(scope="session")
def subject_dataset() -> Path:
    """subject_A prepared at 64 px on every 6th frame (cached under var/test-cache, shared with tests/synth)."""
    if not (SUBJECT.exists() and DRIVING.exists()):
        pytest.skip(f"real footage not available in {VIDEOS} (../shared/data is absent)")
    from synth.prepare import PrepareOptions, prepare

    dataset = SYNTH_CACHE / "subject_A-64-every6"
    prepare([SUBJECT], dataset, PrepareOptions(size=64, every=6), show_progress=False)
    return dataset


@pytest.fixture(scope="session")
def built_avatar(subject_dataset, tmp_path_factory) -> BuiltAvatar:
    root = tmp_path_factory.mktemp("built")
    consent, driving_consent = consent_files(root / "consent")
    out, work, c2pa = root / "test_avatar.avatar", root / "work", root / "c2pa"
    env = {**os.environ, "AVATAR_C2PA_DIR": str(c2pa)}
    for name in ("AVATAR_C2PA_CERT", "AVATAR_C2PA_KEY", "AVATAR_C2PA_CA"):
        env.pop(name, None)
    command = build_command(out, work, consent, driving_consent, faces=subject_dataset)
    checkpoints = work / "swap" / "run" / "checkpoints"
    first = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and first.poll() is None:
        if len(list(checkpoints.glob("ckpt-*.pt"))) >= 2:    # in the middle of the swap stage
            break
        time.sleep(0.2)
    assert first.poll() is None, f"the first build ended before its swap stage: {first.communicate()}"
    done = {p.parent.name: p.stat().st_mtime for p in work.glob("*/done.json")}
    first.send_signal(signal.SIGKILL)
    stdout, stderr = first.communicate(timeout=60)
    killed = subprocess.CompletedProcess(command, first.returncode, stdout, stderr)
    finished = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    return BuiltAvatar(out, work, c2pa, killed, finished, done)
