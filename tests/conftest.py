"""Fixtures shared across test folders: the real footage prepared as GAN datasets (cached under var/test-cache),
and one custom avatar built from real footage with `avatar build`, once.

The build runs as a user runs it (a subprocess of `python -m avatar.cli build`), on subject_A's prepared faces
(`--faces`, the cached dataset) and the first 6 s of driving_B, with the `smoke` preset. It is
killed once during the swap stage and run again, so that the bundle every test uses is the product of a resumed
build. Skips where ../shared/data is absent.

Both take minutes and run in subprocesses, so they start in the background as soon as collection shows a test
that needs the avatar, and the tests that need it run last: the build uses the second core while the other
tests run (the suite alone keeps about one busy).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from build_support import BuiltAvatar, build_command, consent_files, training_env
from footage import (DRIVING, MULTI, MULTI_EVERY, REPO, SUBJECT, SUBJECT_EVERY, cached_prepare, need, prepare_subject,
                     prepared_folder)

if TYPE_CHECKING:        # imported lazily: most tests need none of it
    from synth.prepare import PrepareReport

BUILD_FIXTURE = "built_avatar"
BUILD_TIMEOUT = 1500     # seconds for the prepare and the two build runs together


class BackgroundBuild:
    """The session's custom avatar, made in a thread that only starts subprocesses and waits for them: subject_A
    prepared into the cache (`footage.prepare_subject`), then `avatar build`, killed in its swap stage and run
    again."""

    def __init__(self) -> None:
        self.prepared = threading.Event()       # the subject's dataset is in the cache (or preparing it failed)
        self._thread: threading.Thread | None = None
        self._process: subprocess.Popen | None = None
        self._root: Path | None = None
        self._result: BuiltAvatar | None = None
        self._error: str | None = None

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        self._root = Path(tempfile.mkdtemp(prefix="built-avatar-"))
        self._thread = threading.Thread(target=self._run, name="built-avatar", daemon=True)
        self._thread.start()

    def result(self) -> BuiltAvatar:
        if self._thread is None:
            self.start()
        assert self._thread is not None
        self._thread.join(BUILD_TIMEOUT)
        if self._thread.is_alive():
            raise TimeoutError(f"the session's avatar build took more than {BUILD_TIMEOUT} s")
        if self._result is None:
            raise AssertionError(self._error)
        return self._result

    def stop(self) -> None:
        """End of the session: kill a build still running and remove its files."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=60)
        if self._thread is not None:
            self._thread.join(60)
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)

    def _run(self) -> None:
        try:
            self._result = self._build(self._prepare())
        except BaseException as e:       # reported by result(), in the test that needs the avatar
            self._error = f"the session's avatar build failed: {e!r}"
        finally:
            self.prepared.set()

    def _spawn(self, command: list[str], env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
        self._process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True, **kwargs)
        return self._process

    def _prepare(self) -> Path:
        """subject_A's cached dataset, prepared in a subprocess (dlib's detector holds the interpreter lock)."""
        try:
            tests = str(REPO / "tests")
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}
            process = self._spawn([sys.executable, "-c", "import footage; footage.prepare_subject()"], env)
            _, stderr = process.communicate(timeout=BUILD_TIMEOUT)
            assert process.returncode == 0, f"preparing subject_A failed: {stderr[-3000:]}"
        finally:
            self.prepared.set()
        return prepared_folder("subject_A", SUBJECT_EVERY)

    def _build(self, dataset: Path) -> BuiltAvatar:
        assert self._root is not None
        root = self._root
        consent, driving_consent = consent_files(root / "consent")
        out, work, c2pa = root / "test_avatar.avatar", root / "work", root / "c2pa"
        # beside the other tests: OpenMP threads that sleep while they wait (the product's default), not spin
        env = training_env(AVATAR_C2PA_DIR=str(c2pa), OMP_WAIT_POLICY="PASSIVE")
        for name in ("AVATAR_C2PA_CERT", "AVATAR_C2PA_KEY", "AVATAR_C2PA_CA"):
            env.pop(name, None)
        command = build_command(out, work, consent, driving_consent, faces=dataset)
        checkpoints = work / "swap" / "run" / "checkpoints"
        first = self._spawn(command, env)
        deadline = time.monotonic() + BUILD_TIMEOUT / 2
        while time.monotonic() < deadline and first.poll() is None:
            if len(list(checkpoints.glob("ckpt-*.pt"))) >= 2:    # in the middle of the swap stage
                break
            time.sleep(0.2)
        assert first.poll() is None, f"the first build ended before its swap stage: {first.communicate()}"
        done = {p.parent.name: p.stat().st_mtime for p in work.glob("*/done.json")}
        first.send_signal(signal.SIGKILL)
        stdout, stderr = first.communicate(timeout=60)
        killed = subprocess.CompletedProcess(command, first.returncode, stdout, stderr)
        again = self._spawn(command, env)
        stdout, stderr = again.communicate(timeout=BUILD_TIMEOUT / 2)
        assert again.returncode == 0, stdout + stderr
        finished = subprocess.CompletedProcess(command, again.returncode, stdout, stderr)
        return BuiltAvatar(out, work, c2pa, killed, finished, done)


BACKGROUND = BackgroundBuild()


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Start the avatar build if a selected test needs it, and run those tests last."""
    needing = [item for item in items if BUILD_FIXTURE in getattr(item, "fixturenames", ())]
    if not needing or not (SUBJECT.exists() and DRIVING.exists()):
        return
    later = set(needing)
    items[:] = [item for item in items if item not in later] + needing
    BACKGROUND.start()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    BACKGROUND.stop()


@pytest.fixture(scope="session")
def subject_prepared() -> tuple[PrepareReport, Path]:
    """subject_A prepared on every 6th frame: its report and its dataset folder."""
    need(DRIVING)                                   # the tests that use it pair it with driving_B
    if BACKGROUND.started:                          # being prepared in the background: one writer at a time
        BACKGROUND.prepared.wait(BUILD_TIMEOUT)
    return prepare_subject()


@pytest.fixture(scope="session")
def subject_dataset(subject_prepared) -> Path:
    return subject_prepared[1]


@pytest.fixture(scope="session")
def multi_prepared() -> tuple[PrepareReport, Path]:
    """The several-people stage clip prepared on every 9th frame: its report and its dataset folder."""
    return cached_prepare(MULTI, "multi_person", MULTI_EVERY)


@pytest.fixture(scope="session")
def built_avatar(subject_dataset) -> BuiltAvatar:
    return BACKGROUND.result()
