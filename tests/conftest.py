"""Fixtures shared across test folders: the real footage prepared as GAN datasets (cached under var/test-cache),
and one custom avatar built from real footage with `avatar build`, once.

The build runs as a user runs it (a subprocess of `python -m avatar.cli build`), on subject_A's prepared faces
(`--faces`, the cached dataset) and the first 6 s of driving_B, with the `smoke` preset. It is
killed once during the swap stage and run again, so that the bundle every test uses is the product of a resumed
build. Skips where ../shared/data is absent.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from build_support import BuiltAvatar, build_command, consent_files, training_env
from footage import CACHE, DRIVING, MULTI, MULTI_EVERY, REPO, SUBJECT, SUBJECT_EVERY, need

if TYPE_CHECKING:        # imported lazily: most tests need none of it
    from synth.prepare import PrepareReport


def _cached_prepare(video: Path, name: str, every: int) -> tuple[PrepareReport, Path]:
    """`video` prepared at 64 px on every `every`th frame into CACHE (idempotent and resumable, so a second run
    finds it complete at once); a cache made with other options (an older default) is rebuilt."""
    from synth.dataset import DatasetError
    from synth.prepare import PrepareOptions, prepare

    folder = CACHE / f"{name}-64-every{every}"
    options = PrepareOptions(size=64, every=every)
    try:
        return prepare([need(video)], folder, options, show_progress=False), folder
    except DatasetError as e:
        if "other options" not in str(e):
            raise
        shutil.rmtree(folder)
        return prepare([video], folder, options, show_progress=False), folder


@pytest.fixture(scope="session")
def subject_prepared() -> tuple[PrepareReport, Path]:
    """subject_A prepared on every 6th frame: its report and its dataset folder."""
    need(DRIVING)                                   # the tests that use it pair it with driving_B
    return _cached_prepare(SUBJECT, "subject_A", SUBJECT_EVERY)


@pytest.fixture(scope="session")
def subject_dataset(subject_prepared) -> Path:
    return subject_prepared[1]


@pytest.fixture(scope="session")
def multi_prepared() -> tuple[PrepareReport, Path]:
    """The several-people stage clip prepared on every 9th frame: its report and its dataset folder."""
    return _cached_prepare(MULTI, "multi_person", MULTI_EVERY)


@pytest.fixture(scope="session")
def built_avatar(subject_dataset, tmp_path_factory) -> BuiltAvatar:
    root = tmp_path_factory.mktemp("built")
    consent, driving_consent = consent_files(root / "consent")
    out, work, c2pa = root / "test_avatar.avatar", root / "work", root / "c2pa"
    env = training_env(AVATAR_C2PA_DIR=str(c2pa))
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
