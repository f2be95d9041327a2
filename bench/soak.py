"""Soak: well-behaved viewers keep 25 fps while hostile and broken clients do their worst, all at once.

Runs the real service (`python -m streaming.server`, the built-in avatar unless --avatar) in a child process
on 127.0.0.1 with ICE on loopback, and for --minutes minutes, all bounded in count and rate (every client here
comes from 127.0.0.1, so the per-address limits are off unless --client-limits: the deeper bounds are tested):

- `--good` well-behaved sessions (aiortc clients) that stay, talk every few seconds and sometimes interrupt
  themselves: their frame rate in every one-second window is what the service must protect;
- churners: clients in their own processes that connect, talk once and are then killed (SIGKILL: no goodbye);
- squatters: offers from peers that never connect;
- broken offers (mutations of a real one), HTTP chats in bursts, and idle TCP connections that say nothing.

Prints the minimum per-second frame rate of the well-behaved sessions (at the client; and what the server says
it sent, skipped and sent late for them), the HTTP status counts (5xx must be 0),
the service's RSS and open file descriptors at the start and the end, and how many slots departed peers still
hold once the service's bounds have passed.
Usage: .venv/bin/python bench/soak.py [--minutes 10] [--good 2] [--avatar default|BUNDLE]
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from harness.metrics import by_session, metric_values  # noqa: E402
from harness.service import ServiceProcess, service  # noqa: E402
from harness import loopback_only  # noqa: E402
from harness.probe import AvatarProbe  # noqa: E402

WARM_UP = 3.0            # seconds after a good session connects before its frame rate counts
SETTLE = 25.0            # seconds to wait at the end for the service to free departed peers' slots
IDLE_CONNECTIONS = 200
CHURNERS = 2             # churning clients alive at once
SAY = ["What is AI?", "Hello", "What can you do?", "Tell me a joke", "Who are you?"]


def proc_status(pid: int) -> tuple[float, int]:
    """(RSS in MB, open file descriptors) of a process."""
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:"))
    return rss / 1024, len(os.listdir(f"/proc/{pid}/fd"))


def broken_offers(sdp: str) -> list[str]:
    """Offers the service must refuse with 400: a real one with a part cut, swapped or corrupted."""
    lines = sdp.strip().splitlines()
    drop = lambda prefix: "\r\n".join(l for l in lines if not l.startswith(prefix)) + "\r\n"   # noqa: E731
    return [drop("a=fingerprint"), drop("a=ice-ufrag"), drop("a=ice-pwd"), drop("a=setup"),
            sdp.replace("a=group:BUNDLE 0 1 2", "a=group:BUNDLE 0 1 2 7"),
            sdp.replace("m=video", "m=vidoe"), sdp[: len(sdp) // 2], "v=0\r\nm=\r\n",
            sdp.replace("UDP/TLS/RTP/SAVPF", "RTP/AVP"), sdp.replace("a=fingerprint:sha-256", "a=fingerprint:md5")]


class Counts:
    def __init__(self) -> None:
        self.status: collections.Counter = collections.Counter()
        self.errors: collections.Counter = collections.Counter()

    def add(self, where: str, response: httpx.Response | None, error: Exception | None = None) -> None:
        if response is not None:
            self.status[f"{where} {response.status_code}"] += 1
        else:
            self.errors[f"{where} {type(error).__name__}"] += 1

    def server_errors(self) -> int:
        return sum(n for key, n in self.status.items() if key.rsplit(" ", 1)[1].startswith("5")
                   and not key.endswith(" 503") and not key.endswith(" 429"))


async def watch_server(url: str, until: float, samples: dict[str, list[tuple[float, float]]]) -> None:
    """Every 0.25 s, each live session's frames sent as the service counts them (GET /metrics)."""
    async with httpx.AsyncClient(timeout=5) as http:
        while time.monotonic() < until:
            try:
                text = (await http.get(f"{url}/metrics")).text
            except httpx.HTTPError:
                continue
            now = time.monotonic()
            for session, frames in by_session(metric_values(text), "avatar_session_frames_total").items():
                samples.setdefault(session, []).append((now, frames))
            await asyncio.sleep(0.25)


def server_fps(samples: list[tuple[float, float]], second: int) -> float | None:
    """Frames per second the service sent between the samples around [second, second + 1)."""
    before = [s for s in samples if s[0] <= second]
    after = [s for s in samples if s[0] >= second + 1]
    if not before or not after:
        return None
    (t0, n0), (t1, n1) = before[-1], after[0]
    return (n1 - n0) / (t1 - t0)


async def good_session(url: str, until: float, fps_windows: list[float], ids: list[str],
                       feedback: list[dict], server: dict[str, list[tuple[float, float]]]) -> None:
    probe = AvatarProbe(url)
    try:
        await probe.connect(timeout=60)
        ids.append(probe.session_id)
        await probe.wait_for_media(timeout=60)
        start = time.monotonic() + WARM_UP
        while time.monotonic() < until:
            await asyncio.sleep(random.uniform(3.0, 8.0))
            probe.say(random.choice(SAY))
            if random.random() < 0.3:                       # barge in on itself
                await asyncio.sleep(1.0)
                probe.say(random.choice(SAY))
        end = time.monotonic()
        received = probe.received
        slow = []
        for second in range(int(start), int(end) - 1):
            fps_windows.append(received.video_fps(second, second + 1))
            if fps_windows[-1] < 24:
                slow.append(second)
        # Did this client report a lost picture (PLI) in a slow window or the second before it?
        after_pli = sum(any(second - 1 <= t < second + 1 for t in received.plis) for second in slow)
        sent = [server_fps(server.get(probe.session_id, []), second) for second in slow]
        sent = [fps for fps in sent if fps is not None]
        feedback.append({"slow": len(slow), "slow_after_pli": after_pli, "plis": len(received.plis),
                         "server_slow": sum(fps < 24 for fps in sent), "server_min": min(sent, default=None),
                         "server_known": len(sent),
                         "nacks": len(received.nacks), "nacked": sum(n for _, n in received.nacks),
                         "lost": await probe.video_packets_lost()})
    finally:
        await probe.close()


async def churner(url: str, until: float, counts: Counts) -> None:
    """Client processes that connect, talk, and are killed without a goodbye."""
    while time.monotonic() < until:
        child = subprocess.Popen([sys.executable, __file__, "--client", url], cwd=REPO,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await asyncio.sleep(random.uniform(6.0, 12.0))
        child.send_signal(signal.SIGKILL)
        child.wait()
        counts.status["churner killed"] += 1


async def squatter(url: str, until: float, counts: Counts) -> None:
    """Offers from peers that never connect (the answer is never applied)."""
    from aiortc import RTCConfiguration, RTCPeerConnection

    async with httpx.AsyncClient(timeout=30) as http:
        while time.monotonic() < until:
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pc.addTransceiver("video", direction="recvonly")
            pc.createDataChannel("chat")
            await pc.setLocalDescription(await pc.createOffer())
            try:
                counts.add("squat-offer", await http.post(f"{url}/offer", json={"sdp": pc.localDescription.sdp,
                                                                                 "type": "offer"}))
            except httpx.HTTPError as error:
                counts.add("squat-offer", None, error)
            await pc.close()
            await asyncio.sleep(random.uniform(5.0, 15.0))


async def bad_offers(url: str, until: float, counts: Counts) -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    pc.createDataChannel("chat")
    await pc.setLocalDescription(await pc.createOffer())
    offers = broken_offers(pc.localDescription.sdp)
    await pc.close()
    async with httpx.AsyncClient(timeout=30) as http:
        k = 0
        while time.monotonic() < until:
            try:
                counts.add("bad-offer", await http.post(f"{url}/offer", json={"sdp": offers[k % len(offers)],
                                                                               "type": "offer"}))
            except httpx.HTTPError as error:
                counts.add("bad-offer", None, error)
            k += 1
            await asyncio.sleep(1.0)


async def http_chats(url: str, until: float, counts: Counts) -> None:
    """Bursts of 20 concurrent /chat requests every few seconds."""
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=20)) as http:
        async def one() -> None:
            try:
                counts.add("chat", await http.post(f"{url}/chat", json={"text": random.choice(SAY)}))
            except httpx.HTTPError as error:
                counts.add("chat", None, error)

        while time.monotonic() < until:
            await asyncio.gather(*(one() for _ in range(20)))
            await asyncio.sleep(random.uniform(2.0, 5.0))


async def idle_connections(host: str, port: int, until: float, counts: Counts) -> None:
    """Keep IDLE_CONNECTIONS TCP connections open that send nothing (or half a request); reopen closed ones."""
    loop = asyncio.get_running_loop()
    held: list[socket.socket] = []
    try:
        while time.monotonic() < until:
            alive = []
            for sock in held:
                try:
                    closed = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
                except BlockingIOError:
                    closed = False
                except OSError:
                    closed = True
                if closed:
                    sock.close()
                    counts.status["idle closed by server"] += 1
                else:
                    alive.append(sock)
            held = alive
            while len(held) < IDLE_CONNECTIONS:
                sock = socket.socket()
                sock.setblocking(False)
                try:
                    await loop.sock_connect(sock, (host, port))
                except OSError as error:
                    counts.errors[f"idle connect {type(error).__name__}"] += 1
                    sock.close()
                    break
                if len(held) % 2:
                    sock.send(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")     # half a request
                held.append(sock)
            await asyncio.sleep(1.0)
    finally:
        for sock in held:
            sock.close()


async def hostile(url: str, minutes: float, churners: int) -> Counts:
    """Everything but the good sessions, in this (low-priority) process."""
    host, port = url.split("//")[1].split(":")
    counts = Counts()
    until = time.monotonic() + 60 * minutes
    jobs = [churner(url, until, counts) for _ in range(churners)]
    jobs += [squatter(url, until, counts), bad_offers(url, until, counts), http_chats(url, until, counts),
             idle_connections(host, int(port), until, counts)]
    for result in await asyncio.gather(*jobs, return_exceptions=True):
        if isinstance(result, BaseException):
            counts.errors[f"job failed {result!r}"] += 1
    return counts


class CpuCap:
    """A cgroup (v1 `cpu` controller) holding the hostile clients to `cores` of CPU time: over a network
    their CPU would not be the service's. Needs root; `available` is False where it cannot be made."""

    ROOT = Path("/sys/fs/cgroup/cpu")

    def __init__(self, cores: float) -> None:
        self.path = self.ROOT / f"avatar-soak-{os.getpid()}"
        self.available = False
        if cores <= 0:
            return
        try:
            self.path.mkdir()
            (self.path / "cpu.cfs_period_us").write_text("100000")
            (self.path / "cpu.cfs_quota_us").write_text(str(max(1000, int(cores * 100000))))
            self.available = True
        except OSError as error:
            print(f"no CPU cap for the hostile clients ({error}); they run at nice 19 only")

    def join(self) -> None:
        """In the child, before exec: this process and all it starts go into the cgroup."""
        if self.available:
            (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def remove(self) -> None:
        if self.available:
            for _ in range(50):   # its processes may take a moment to be reaped
                try:
                    self.path.rmdir()
                    return
                except OSError:
                    time.sleep(0.1)


async def soak(svc: ServiceProcess, minutes: float, good: int, churners: int, hostile_cpu: float) -> dict:
    """The good sessions here; the hostile clients in a child process at the lowest CPU priority and, with
    `hostile_cpu`, held to that many cores (on this machine their CPU is the service's too, which it would not
    be over a network)."""
    url = svc.url
    windows: list[float] = []
    rss0, fds0 = proc_status(svc.proc.pid)
    cap = CpuCap(hostile_cpu)
    child = await asyncio.create_subprocess_exec("nice", "-n", "19", sys.executable, __file__, "--hostile", url,
                                                 "--minutes", str(minutes), "--churners", str(churners),
                                                 stdout=asyncio.subprocess.PIPE, preexec_fn=cap.join)
    until = time.monotonic() + 60 * minutes
    ids: list[str] = []
    feedback: list[dict] = []
    server: dict[str, list[tuple[float, float]]] = {}
    results = await asyncio.gather(watch_server(url, until, server),
                                   *(good_session(url, until, windows, ids, feedback, server) for _ in range(good)),
                                   return_exceptions=True)
    report = json.loads((await child.communicate())[0].decode().strip().splitlines()[-1])
    cap.remove()
    failures = [r for r in results if isinstance(r, BaseException)]
    await asyncio.sleep(SETTLE)
    async with httpx.AsyncClient(timeout=10) as http:
        health = (await http.get(f"{url}/health")).json()
    rss1, fds1 = proc_status(svc.proc.pid)
    counts = Counts()
    counts.status.update(report["status"])
    counts.errors.update(report["errors"])
    return {"windows": windows, "counts": counts, "rss": (rss0, rss1), "fds": (fds0, fds1),
            "left_sessions": health.get("sessions"), "failures": failures, "feedback": feedback,
            "server_side": [ended for ended in svc.session_ends() if ended["session"] in ids]}


async def client(url: str) -> None:
    """One churning client (its own process, killed by the soak): connect, talk, wait to be killed."""
    probe = AvatarProbe(url)
    await probe.connect(timeout=60)
    probe.say(random.choice(SAY))
    await asyncio.sleep(3600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--good", type=int, default=2, help="well-behaved sessions (default 2)")
    parser.add_argument("--churners", type=int, default=CHURNERS, help=f"churning clients alive at once (default {CHURNERS})")
    parser.add_argument("--hostile-cpu", type=float, default=0.0,
                        help="hold the hostile clients to this many cores (a cgroup; needs root); 0: nice 19 only")
    parser.add_argument("--avatar", default="default")
    parser.add_argument("--client-limits", action="store_true", help="keep the per-address limits on")
    parser.add_argument("--client", default=None, help=argparse.SUPPRESS)     # a churner's own process
    parser.add_argument("--hostile", default=None, help=argparse.SUPPRESS)    # the hostile clients' process
    args = parser.parse_args()
    if args.client:
        with loopback_only():
            asyncio.run(client(args.client))
        return
    if args.hostile:
        with loopback_only():
            counts = asyncio.run(hostile(args.hostile, args.minutes, args.churners))
        print(json.dumps({"status": dict(counts.status), "errors": dict(counts.errors)}))
        return
    print(f"machine: {os.cpu_count()} CPU cores; soak of {args.minutes:g} min, {args.good} good sessions, "
          f"hostile clients at nice 19{f' held to {args.hostile_cpu:g} cores' if args.hostile_cpu else ''}; "
          f"{args.churners} churners, a squatter, broken offers, chat bursts, {IDLE_CONNECTIONS} idle connections")
    os.environ["AVATAR_CLIENT_LIMITS"] = "true" if args.client_limits else "false"     # read by the service
    with service(max_sessions=8, avatar=args.avatar) as svc, loopback_only():
        result = asyncio.run(soak(svc, args.minutes, args.good, args.churners, args.hostile_cpu))
    windows, counts = result["windows"], result["counts"]
    print(f"good sessions: {len(windows)} one-second windows, minimum {min(windows, default=0):.0f} fps, "
          f"{sum(w < 24 for w in windows)} windows under 24 fps")
    for key, n in sorted(counts.status.items()):
        print(f"  {key}: {n}")
    for key, n in sorted(counts.errors.items()):
        print(f"  client-side {key}: {n}")
    print(f"5xx other than 503 (full/busy): {counts.server_errors()}; "
          f"503: {sum(n for k, n in counts.status.items() if k.endswith(' 503'))}")
    print(f"service RSS {result['rss'][0]:.0f} -> {result['rss'][1]:.0f} MB; "
          f"open file descriptors {result['fds'][0]} -> {result['fds'][1]}")
    print(f"sessions still live {SETTLE:.0f} s after the end (all clients gone): {result['left_sessions']} "
          "(slots held by departed peers)")
    for ended in result["server_side"]:
        print(f"server side, good session {ended['session'][-8:]}: {ended['frames']} frames sent in "
              f"{ended['seconds']:.0f} s, {ended['frames_skipped']} skipped, {ended['frames_late']} handed over late")
    for seen in result["feedback"]:
        print(f"client side, good session: {seen['slow']} windows under 24 fps, {seen['slow_after_pli']} of them "
              f"in or just after a PLI (a frame it could not complete); {seen['plis']} PLIs, {seen['nacks']} NACKs "
              f"for {seen['nacked']} packets, {seen['lost']} video packets never received; in {seen['server_slow']} "
              f"of the {seen['server_known']} slow windows with server samples the service itself sent under 24 "
              f"fps (least {seen['server_min'] or 0:.1f})")
    for failure in result["failures"]:
        print(f"a client job failed: {failure!r}")


if __name__ == "__main__":
    main()
