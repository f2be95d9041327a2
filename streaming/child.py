"""The real service in a child process on 127.0.0.1 (loopback ICE only), with its CPU time: for benchmarks."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
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

    def __init__(self, proc: subprocess.Popen, url: str) -> None:
        self.proc = proc
        self.url = url

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def service(max_sessions: int = 16, startup_timeout: float = 600.0,
            avatar: str = "default") -> Iterator[ServiceProcess]:
    port = free_port()
    env = dict(os.environ, AVATAR_PORT=str(port), AVATAR_ICE_LOOPBACK_ONLY="1",
               AVATAR_MAX_SESSIONS=str(max_sessions), AVATAR_AVATAR=avatar, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "streaming.server"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the service exited: {proc.stderr.read()[-2000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the service did not start in time")
            time.sleep(0.5)
        yield ServiceProcess(proc, url)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
