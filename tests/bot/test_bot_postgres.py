"""The bot on PostgreSQL: a throw-away server on 127.0.0.1. Two `avatar serve` instances started at the same
moment on the fresh database train it exactly once and both answer; `avatar chat --db` then reuses it."""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness.service import free_port

REPO = Path(__file__).resolve().parents[2]


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    # initdb refuses to run as root: run the server as the 'postgres' system user when we are root.
    as_user: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
        as_user = ["runuser", "-u", "postgres", "--"]
    # Not under pytest's tmp folder: that one is private to root, and the server runs as 'postgres'.
    home = Path(tempfile.mkdtemp(prefix="avatar-pg-"))
    data = home / "data"
    data.mkdir()
    if as_user:
        shutil.chown(home, "postgres")
        shutil.chown(data, "postgres")
    port = free_port()
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True, timeout=120)  # noqa: E731
    run(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "avatar")
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-l", str(data / "server.log"),
        "-o", f"-h 127.0.0.1 -p {port} -k {data}", "start")
    try:
        yield f"postgresql+psycopg2://avatar@127.0.0.1:{port}/postgres"
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def two_instances(postgres_url: str, tmp_path_factory) -> Iterator[list[tuple[str, Path]]]:
    """Two `avatar serve --db postgres_url` started together on the fresh database; (URL, log) of each, once
    both are ready (the bot trained and the avatar loaded)."""
    logs = tmp_path_factory.mktemp("instances")
    ports = [free_port(), free_port()]
    procs = []
    for k, port in enumerate(ports):
        with (logs / f"instance{k}.log").open("w") as log:
            procs.append(subprocess.Popen([sys.executable, "-m", "avatar.cli", "serve", "--db", postgres_url,
                                           "--port", str(port)], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                          env={**os.environ, "AVATAR_INSTANCE_ID": f"i{k}"}))
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        deadline = time.monotonic() + 900
        waiting = set(range(2))
        while waiting:
            for k in list(waiting):
                assert procs[k].poll() is None, (logs / f"instance{k}.log").read_text()[-3000:]
                try:
                    if httpx.get(f"{urls[k]}/ready", timeout=5).status_code == 200:
                        waiting.discard(k)
                except httpx.HTTPError:
                    pass
            assert time.monotonic() < deadline, "the instances did not get ready"
            time.sleep(0.5)
        yield [(url, logs / f"instance{k}.log") for k, url in enumerate(urls)]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_two_instances_started_together_train_once_and_both_answer(two_instances, postgres_url):
    trained = [re.search(r"Bot trained: (\d+) statements", log.read_text()) for _, log in two_instances]
    assert sum(match is not None for match in trained) == 1, [log.read_text()[-2000:] for _, log in two_instances]
    statements = int(next(match for match in trained if match).group(1))
    assert statements > 1000 and _count_statements(postgres_url) == statements   # one training's worth, not two
    waited = [log.read_text() for _, log in two_instances if "Waiting for another instance" in log.read_text()]
    assert len(waited) == 1                                 # the other one waited for the lock, then reused it
    for url, _ in two_instances:
        reply = httpx.post(f"{url}/chat", json={"text": "What is AI?"}, timeout=60)
        assert reply.status_code == 200, reply.text
        assert "Artificial Intelligence is the branch of engineering and science" in reply.json()["reply"]


def _chat(url: str, text: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "avatar.cli", "chat", "--db", url], input=text, text=True,
                          capture_output=True, timeout=600, cwd=REPO)


def _count_statements(url: str) -> int:
    # psycopg2 directly, not a SQLAlchemy engine: ChatterBot's SQLite adapter (used by other tests in this process)
    # registers a PRAGMA listener on every SQLAlchemy engine, which PostgreSQL rejects.
    import psycopg2

    with psycopg2.connect(url.replace("postgresql+psycopg2://", "postgresql://")) as db, db.cursor() as cur:
        cur.execute("select count(*) from statement")
        return cur.fetchone()[0]


def test_avatar_chat_answers_the_paper_from_postgres(two_instances, postgres_url):
    first = _chat(postgres_url, "What is AI?\n")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "Artificial Intelligence is the branch of engineering and science" in first.stdout

    statements = _count_statements(postgres_url)
    assert statements > 1000  # the whole English corpus plus ours

    second = _chat(postgres_url, "What was the first computer?\n")  # a restart reuses the trained database
    assert "The ENIAC is regarded as the first 'real' computer" in second.stdout
    assert _count_statements(postgres_url) == statements
