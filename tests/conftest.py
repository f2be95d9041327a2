"""Fixtures shared across test folders: the real footage prepared as GAN datasets (cached under var/test-cache),
and one custom avatar built from real footage with `avatar build`, once.

The build runs as a user runs it (a subprocess of `python -m avatar.cli build`), on subject_A's prepared faces
(`--faces`, the cached dataset) and the first 6 s of driving_B, with the `smoke` preset. It is
killed once during the swap stage and run again, so that the bundle every test uses is the product of a resumed
build. Skips where ../shared/data is absent.

Builds take minutes and run in subprocesses, so they start in the background (`BackgroundJob`) as soon as
collection shows a test that needs one, and the tests that need them run last: the builds use the second core
while the other tests run (the suite alone keeps about one busy). Two run so: the custom avatar, and a build
without --faces that stops at the smoke GAN.
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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from build_support import BuiltAvatar, build_command, consent_files, short_video, training_env
from footage import (DRIVING, MULTI, MULTI_EVERY, REPO, SUBJECT, SUBJECT_EVERY, cached_prepare, need, prepare_subject,
                     prepared_folder)

if TYPE_CHECKING:        # imported lazily: most tests need none of it
    from synth.prepare import PrepareReport

JOB_TIMEOUT = 1500       # seconds for one background job (the prepare and the two build runs together)


class BackgroundJob:
    """Minutes of work in subprocesses, done in a thread that only starts them and waits: started as soon as
    collection shows a test that needs its fixture (`fixture`), and handed to that fixture when done."""

    def __init__(self, fixture: str, work: Callable[[BackgroundJob, Path], Any]) -> None:
        self.fixture = fixture
        self._work = work
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()           # between spawning a process and stopping the job
        self._stopping = False
        self._process: subprocess.Popen | None = None
        self._root: Path | None = None
        self._result: Any = None
        self._error: str | None = None

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        self._root = Path(tempfile.mkdtemp(prefix=f"{self.fixture}-"))
        self._thread = threading.Thread(target=self._run, name=self.fixture, daemon=True)
        self._thread.start()

    def result(self) -> Any:
        if self._thread is None:
            self.start()
        assert self._thread is not None
        self._thread.join(JOB_TIMEOUT)
        if self._thread.is_alive():
            raise TimeoutError(f"{self.fixture} took more than {JOB_TIMEOUT} s")
        if self._error is not None:
            raise AssertionError(self._error)
        return self._result

    def stop(self) -> None:
        """End of the session: kill a process still running (none starts after this) and remove the job's files."""
        with self._lock:
            self._stopping, process = True, self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=60)
        if self._thread is not None:
            self._thread.join(60)
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)

    def spawn(self, command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        with self._lock:
            if self._stopping:
                raise RuntimeError("the test session has ended")
            self._process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE, text=True)
            return self._process

    def run(self, command: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        process = self.spawn(command, env)
        stdout, stderr = process.communicate(timeout=JOB_TIMEOUT)
        return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)

    def _run(self) -> None:
        assert self._root is not None
        try:
            self._result = self._work(self, self._root)
        except BaseException as e:       # reported by result(), in the test that needs it
            self._error = f"{self.fixture} failed: {e!r}"


def _beside_the_tests(**extra: str) -> dict[str, str]:
    """A background build's environment: OpenMP threads that sleep while they wait (the product's default), not
    spin, since it shares the cores with the tests; no C2PA identity of the user's."""
    env = training_env(OMP_WAIT_POLICY="PASSIVE", **extra)
    for name in ("AVATAR_C2PA_CERT", "AVATAR_C2PA_KEY", "AVATAR_C2PA_CA"):
        env.pop(name, None)
    return env


def _build_avatar(job: BackgroundJob, root: Path) -> BuiltAvatar:
    """subject_A prepared into the cache in a subprocess (dlib's detector holds the interpreter lock), then
    `avatar build` on it, killed in its swap stage and run again."""
    try:
        path = [str(REPO / "tests"), *filter(None, [os.environ.get("PYTHONPATH")])]
        prepared = job.run([sys.executable, "-c", "import footage; footage.prepare_subject()"],
                           {**os.environ, "PYTHONPATH": os.pathsep.join(path)})
        assert prepared.returncode == 0, f"preparing subject_A failed: {prepared.stderr[-3000:]}"
    finally:
        SUBJECT_READY.set()
    consent, driving_consent = consent_files(root / "consent")
    out, work, c2pa = root / "test_avatar.avatar", root / "work", root / "c2pa"
    env = _beside_the_tests(AVATAR_C2PA_DIR=str(c2pa))
    command = build_command(out, work, consent, driving_consent, faces=prepared_folder("subject_A", SUBJECT_EVERY))
    checkpoints = work / "swap" / "run" / "checkpoints"
    first = job.spawn(command, env)
    deadline = time.monotonic() + JOB_TIMEOUT / 2
    while time.monotonic() < deadline and first.poll() is None:
        if len(list(checkpoints.glob("ckpt-*.pt"))) >= 2:    # in the middle of the swap stage
            break
        time.sleep(0.2)
    assert first.poll() is None, f"the first build ended before its swap stage: {first.communicate()}"
    done = {p.parent.name: p.stat().st_mtime for p in work.glob("*/done.json")}
    first.send_signal(signal.SIGKILL)
    stdout, stderr = first.communicate(timeout=60)
    killed = subprocess.CompletedProcess(command, first.returncode, stdout, stderr)
    finished = job.run(command, env)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    return BuiltAvatar(out, work, c2pa, killed, finished, done)


def _build_without_faces(job: BackgroundJob, root: Path) -> tuple[subprocess.CompletedProcess, Path, Path]:
    """`avatar build` as a user without --faces runs it (prepare -> GAN -> sample), on the first 5 s of
    subject_A: (the finished command, its work folder, its --out)."""
    subject = short_video(SUBJECT, root / "subject_5s.mp4", 150)
    consent, driving_consent = consent_files(root / "consent")
    out, work = root / "avatar", root / "work"
    command = build_command(out, work, consent, driving_consent, subject=subject)
    return job.run(command, _beside_the_tests()), work, out


SUBJECT_READY = threading.Event()     # the built_avatar job has prepared subject_A into the cache (or failed to)
JOBS = [BackgroundJob("built_avatar", _build_avatar), BackgroundJob("build_without_faces", _build_without_faces)]
BUILT = JOBS[0]


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Start the background jobs that selected tests need, and run those tests last."""
    if config.option.collectonly or not (SUBJECT.exists() and DRIVING.exists()):
        return
    later: set[pytest.Item] = set()
    for job in JOBS:
        needing = {item for item in items if job.fixture in getattr(item, "fixturenames", ())}
        if needing:
            later |= needing
            job.start()
    if later:
        items[:] = [item for item in items if item not in later] + [item for item in items if item in later]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for job in JOBS:
        job.stop()


@pytest.fixture(scope="session")
def subject_prepared() -> tuple[PrepareReport, Path]:
    """subject_A prepared on every 6th frame: its report and its dataset folder."""
    need(DRIVING)                                   # the tests that use it pair it with driving_B
    if BUILT.started:                               # being prepared in the background: one writer at a time
        SUBJECT_READY.wait(JOB_TIMEOUT)
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
    return BUILT.result()


@pytest.fixture(scope="session")
def build_without_faces() -> tuple[subprocess.CompletedProcess, Path, Path]:
    if not (SUBJECT.exists() and DRIVING.exists()):
        pytest.skip("real footage not available (../shared/data is absent)")
    return JOBS[1].result()
