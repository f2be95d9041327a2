"""Helpers for the streaming tests: stand-ins for the engine and the bot, and a server in a thread.

The stand-ins are used through the same protocols as the real parts: a tone instead of speech, flat frames
whose brightness encodes the driving frame, and an echoing bot that refuses empty messages like the real one.
"""
from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import uvicorn
from fastapi import FastAPI

from avatar.types import BUILT_IN_NAME, FPS, SAMPLE_RATE, AudioClip, Speech, Utterance
from harness.service import free_port, stop_process  # free_port: the tests' one way to pick a port
from streaming.settings import ServiceSettings

SIZE = 128


class ToneResponder:
    """Replies "You said: <text>"; a blank message raises ValueError like the bot's InvalidMessage. A message
    that begins with "slowly" takes half a second to answer, like a bot that thinks."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def reply(self, text: str, session_id: str = "default") -> str:
        if not text.strip():
            raise ValueError("The message is empty: please type something.")
        self.calls.append((text, session_id))
        if text.startswith("slowly"):
            time.sleep(0.5)
        return f"You said: {text}"


class TonePerformer:
    """Speaks a 440 Hz tone 0.8 s long, in two segments; idle frames cycle through driving frames 0..9."""

    def __init__(self, seed: int = 0) -> None:
        self._idle = 0
        self.interrupts: list[int | None] = []   # the frame on screen at each barge-in

    def prepare_stream(self, text: str) -> Iterator[tuple[Utterance, bool]]:
        """Two segments: 0.4 s of tone on driving frames 100..109, then 0.4 s on 110..119."""
        for k in range(2):
            yield self.segment(first_frame=100 + 10 * k), k == 0

    @staticmethod
    def segment(first_frame: int = 100, seconds: float = 0.4) -> Utterance:
        n = int(seconds * SAMPLE_RATE)
        tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(n) / SAMPLE_RATE)).astype(np.int16)
        n_frames = int(np.ceil(n / SAMPLE_RATE * FPS))
        return Utterance(speech=Speech("tone", AudioClip(tone), ()), mouth_targets=np.zeros((n_frames, 3), np.float32),
                         frame_indices=np.arange(first_frame, first_frame + n_frames, dtype=np.int64))

    def idle(self, n: int) -> np.ndarray:
        out = (self._idle + np.arange(n)) % 10
        self._idle += n
        return out.astype(np.int64)

    def idle_towards(self, n: int, target: int) -> bool:
        self._idle = (int(target) - n + 1) % 10            # the cycle, shifted to reach `target` on the n-th frame
        return True

    def follow(self, index: int) -> None:
        self._idle = (int(index) + 1) % 10

    def interrupt(self, current: int | None = None) -> None:
        self.interrupts.append(current)

    def render(self, index: int) -> np.ndarray:
        return np.full((SIZE, SIZE, 3), min(255, 2 * int(index)), np.uint8)


class FakeClock:
    """A session clock whose time moves only when a track sleeps or waits. With `real_waits`, a wait for an
    event first waits that many real seconds for it (for a reply placed from another thread)."""

    def __init__(self, real_waits: float = 0.0) -> None:
        self.now = 0.0
        self.real_waits = real_waits
        self.waiting = asyncio.Event()
        self.woken = 0

    def elapsed(self) -> float:
        return self.now

    async def sleep_until(self, seconds: float) -> None:
        self.now = max(self.now, seconds)

    async def wait(self, event: asyncio.Event, seconds: float) -> bool:
        self.waiting.set()
        try:
            await asyncio.wait_for(event.wait(), self.real_waits)
        except TimeoutError:
            self.now = max(self.now, seconds)
            return False
        self.woken += 1
        return True


class ToneEngine:
    frame_size = (SIZE, SIZE)

    def __init__(self, name: str = BUILT_IN_NAME, consent: tuple[str, ...] = ()) -> None:
        self.name = name
        self.consent = consent
        self.performers: list[TonePerformer] = []

    def performer(self, seed: int = 0) -> TonePerformer:
        self.performers.append(TonePerformer(seed))
        return self.performers[-1]


@contextmanager
def serve_in_thread(app: FastAPI, port: int, timeout: float = 120.0, ready: bool = True) -> Iterator[str]:
    """Run `app` on 127.0.0.1:port until the block ends; yields its base URL once it listens and, with `ready`,
    once the avatar and the bot are loaded."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}"
    while not (server.started and (not ready or _ready(url))):
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ready", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


TURN_SERVER = "/usr/bin/turnserver"


@contextmanager
def turn_server(log_path: Path, secret: str, port: int | None = None) -> Iterator[str]:
    """coturn on 127.0.0.1 with the shared-secret ("REST API") credentials; yields its turn: URL.

    Relays on loopback too (allow-loopback-peers), which a deployment would not allow: here both peers are.
    """
    port = port or free_port()
    with log_path.open("w") as log:
        proc = subprocess.Popen([TURN_SERVER, "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
                                 f"--listening-port={port}", "--min-port=49152", "--max-port=49407",
                                 "--use-auth-secret", f"--static-auth-secret={secret}", "--realm=avatar.test",
                                 "--allow-loopback-peers", "--no-tls", "--no-dtls", "--no-cli", "--fingerprint",
                                 "--verbose", "--log-file=stdout", "--simple-log"],
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while "Total General servers" not in log_path.read_text(errors="replace") and "listener opened" not in \
                log_path.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"turnserver did not start: {log_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)
        time.sleep(0.5)
        yield f"turn:127.0.0.1:{port}?transport=udp"
    finally:
        stop_process(proc, 10)


def loopback_settings(**overrides) -> ServiceSettings:
    """Settings for a test server on 127.0.0.1; per-client limits off unless asked for (every test client is
    127.0.0.1)."""
    overrides.setdefault("client_limits", False)
    return ServiceSettings(host="127.0.0.1", port=0, ice_loopback_only=True, **overrides)
