"""The real service in a child process on 127.0.0.1 (loopback ICE only), with its CPU time and its log: for
benchmarks and tests. The log goes to a file, never to a pipe nobody reads (a full pipe would stall the service)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServiceProcess:
    """A running `python -m streaming.server`; `cpu_seconds()` reads its user+system time from /proc."""

    def __init__(self, proc: subprocess.Popen, url: str, log_path: Path) -> None:
        self.proc = proc
        self.url = url
        self.log_path = log_path

    def log(self) -> str:
        """What the service has logged so far (stderr)."""
        return self.log_path.read_text(errors="replace")

    def session_ends(self) -> list[dict]:
        """The service's end-of-session records so far (frames sent, skipped and late, as the server counted)."""
        marker = "session end "
        return [json.loads(line.split(marker, 1)[1]) for line in self.log().splitlines() if marker in line]

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def service(max_sessions: int = 16, startup_timeout: float = 600.0,
            avatar: str = "default") -> Iterator[ServiceProcess]:
    port = free_port()
    env = dict(os.environ, AVATAR_PORT=str(port), AVATAR_ICE_LOOPBACK_ONLY="1",
               AVATAR_MAX_SESSIONS=str(max_sessions), AVATAR_AVATAR=avatar, PYTHONPATH=str(REPO))
    with tempfile.TemporaryDirectory(prefix="avatar-service-") as folder:
        log_path = Path(folder) / "service.log"
        with log_path.open("w") as log_file:
            proc = subprocess.Popen([sys.executable, "-m", "streaming.server"], cwd=REPO, env=env,
                                    stdout=subprocess.DEVNULL, stderr=log_file, text=True)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + startup_timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the service exited: {log_path.read_text(errors='replace')[-2000:]}")
                try:
                    if httpx.get(f"{url}/ready", timeout=1).status_code == 200:   # loaded, room for a session
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the service did not start in time")
                time.sleep(0.5)
            yield ServiceProcess(proc, url, log_path)
        finally:
            stop_process(proc, 20)


def stop_process(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, and SIGKILL if it has not exited within `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
