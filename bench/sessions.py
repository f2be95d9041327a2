"""Sustained frame rate and CPU per live session, and how many concurrent sessions hold 25 fps.

Runs the real service in a child process (its CPU time read from /proc) and N aiortc clients here, for
N = 1, 2, ... until the slowest session falls below 24 fps or --max is reached. The clients talk now and
then so both idle and speaking frames are measured. The clients decode every frame on the same machine,
so their CPU is reported too. Where the server's time goes comes from its own /metrics: the CPU seconds
spent rendering (and converting) video frames, in the VP8 encoder, rendering and encoding the shared idle
stream (once for all listening sessions), and in the Opus encoder, per session and second; the rest is aiortc's
packetising, SRTP and RTCP, and the event loop. It also prints the share of the frames sent from the shared idle
stream, and the busiest thread pools' CPU (avatar_thread_cpu_seconds): "media-loop" is the event loop that runs
aiortc's Python. --no-shared-idle measures the service with every frame encoded per session.
--client-processes K spreads the clients over K processes, as real viewers are each in a process of their own.
Usage: .venv/bin/python bench/sessions.py [--max 16] [--step 1] [--seconds 10] [--idle] [--avatar default|BUNDLE]
       [--no-shared-idle] [--instances 1] [--client-processes 1]
(--step 4: 1, 4, 8, 12, 16 sessions)
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.metrics import by_label, by_session, metric_values, value  # noqa: E402
from harness.service import ServiceProcess, service  # noqa: E402
from harness import loopback_only  # noqa: E402
from harness.probe import AvatarProbe  # noqa: E402

HOLD_FPS = 24.0
STAGES = ("render", "encode_video", "encode_shared", "encode_audio")
WARM_UP = 4.0     # seconds after the last client connects: sessions join the shared idle stream within ~2 s
TALK_GAP = 0.7    # seconds between two clients' messages, or less where the window would end before the last


class Fleet:
    """The instances of the service under test (`--instances`): clients go to them in turn, and their CPU,
    stage times and counts are summed (a session's id names its instance, so ids never collide)."""

    def __init__(self, services: list[ServiceProcess]) -> None:
        self.services = services

    def url(self, i: int) -> str:
        return self.services[i % len(self.services)].url

    def cpu_seconds(self) -> float:
        return sum(svc.cpu_seconds() for svc in self.services)

    def session_ends(self) -> list[dict]:
        return [record for svc in self.services for record in svc.session_ends()]


async def stage_seconds(fleet: Fleet) -> tuple[dict[str, float], dict[str, float], tuple[dict, dict]]:
    """The service's CPU seconds so far per media stage (the avatar_frame_seconds histogram's sums) and per
    thread pool (avatar_thread_cpu_seconds), and each session's frames sent so far: all, and from the shared
    idle stream; summed over the instances."""
    stages: dict[str, float] = dict.fromkeys(STAGES, 0.0)
    threads: dict[str, float] = {}
    frames: tuple[dict, dict] = ({}, {})
    async with httpx.AsyncClient(timeout=10) as http:
        for svc in fleet.services:
            values = metric_values((await http.get(f"{svc.url}/metrics")).text)
            frames[0].update(by_session(values, "avatar_session_frames_total"))
            frames[1].update(by_session(values, "avatar_session_frames_shared_total"))
            for stage in STAGES:
                stages[stage] += value(values, "avatar_frame_seconds_sum", stage=stage)
            for pool, seconds in by_label(values, "avatar_thread_cpu_seconds_total", "pool").items():
                threads[pool] = threads.get(pool, 0.0) + seconds
    return stages, threads, frames


def shared_share(before: tuple[dict, dict], after: tuple[dict, dict]) -> float:
    """The share of the frames sent between two readings that came from the shared idle stream, over the
    sessions live at both."""
    live = before[0].keys() & after[0].keys()
    frames = sum(after[0][s] - before[0][s] for s in live)
    return sum(after[1][s] - before[1][s] for s in live) / frames if frames else float("nan")


class Clients:
    """The level's aiortc clients, in this process or spread over `processes` child processes (as real viewers
    are: each browser its own process, not all in one interpreter). Client i connects to the fleet's
    instance i and, if talking, says one message at 0.5 + i * gap seconds into the window; client i lives
    in process i % processes."""

    def __init__(self, fleet: Fleet, n: int, processes: int) -> None:
        self.n, self.processes = n, max(1, min(processes, n))
        self.urls = [fleet.url(i) for i in range(n)]
        self._probes: list[AvatarProbe] = []
        self._children: list[subprocess.Popen] = []

    async def connect(self) -> None:
        if self.processes == 1:
            self._probes = [AvatarProbe(url) for url in self.urls]
            for probe in self._probes:
                await probe.connect()
                await probe.wait_for_media()
            return
        for k in range(self.processes):
            spec = {"urls": self.urls[k::self.processes], "indices": list(range(self.n))[k::self.processes]}
            self._children.append(subprocess.Popen([sys.executable, __file__, "--clients", json.dumps(spec)],
                                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        for child in self._children:
            line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 120)
            if line.strip() != "READY":
                raise RuntimeError(f"a client process did not connect its clients: {line!r}")

    async def window(self, start: float, seconds: float, gap: float | None) -> tuple[list[float], float, set, tuple]:
        """Talk (if `gap`) and measure from `start` (time.monotonic(), the same clock in every process) for
        `seconds`: each client's fps, the clients' CPU seconds, their session ids, a frame size seen."""
        if self.processes == 1:
            return await _window(self._probes, range(self.n), start, seconds, gap)
        for child in self._children:
            child.stdin.write(json.dumps({"start": start, "seconds": seconds, "gap": gap}) + "\n")
            child.stdin.flush()
        fps: dict[int, float] = {}
        cpu, ids, size = 0.0, set(), (0, 0)
        for k, child in enumerate(self._children):
            line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), seconds + 120)
            if not line:
                raise RuntimeError("a client process ended without its figures")
            out = json.loads(line)
            fps.update(zip(range(self.n)[k::self.processes], out["fps"]))
            cpu, size = cpu + out["cpu"], tuple(out["size"])
            ids.update(out["ids"])
        return [fps[i] for i in range(self.n)], cpu, ids, size

    async def close(self) -> None:
        for probe in self._probes:
            await probe.close()
        for child in self._children:
            with contextlib.suppress(OSError):
                child.stdin.close()
            try:
                await asyncio.to_thread(child.wait, 30)
            except subprocess.TimeoutExpired:
                child.kill()


async def _window(probes: list[AvatarProbe], indices, start: float, seconds: float,
                  gap: float | None) -> tuple[list[float], float, set, tuple]:
    loop = asyncio.get_running_loop()
    own0 = time.process_time()
    if gap is not None:                                           # staggered speech during the window
        for i, probe in zip(indices, probes):
            loop.call_at(start + 0.5 + i * gap, probe.say, "What is AI?")
    await asyncio.sleep(max(0.0, start + seconds - time.monotonic()))
    own1 = time.process_time()
    fps = [p.received.video_fps(start, start + seconds) for p in probes]
    return fps, own1 - own0, {p.session_id for p in probes}, probes[0].received.video_sizes[-1]


async def client_process(spec: dict) -> None:
    """`--clients SPEC`, a child of `Clients`: connect the clients, say READY, then for the window asked on
    stdin print their figures as one JSON line, and keep them connected until stdin closes."""
    probes = [AvatarProbe(url) for url in spec["urls"]]
    try:
        for probe in probes:
            await probe.connect()
            await probe.wait_for_media()
        print("READY", flush=True)
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return
        asked = json.loads(line)
        fps, cpu, ids, size = await _window(probes, spec["indices"], asked["start"], asked["seconds"], asked["gap"])
        print(json.dumps({"fps": fps, "cpu": cpu, "ids": sorted(ids), "size": list(size)}), flush=True)
        await asyncio.to_thread(sys.stdin.readline)      # stay connected until the level is read: stdin closes
    finally:
        for probe in probes:
            await probe.close()


async def run_level(svc: Fleet, n: int, seconds: float, talk: bool, processes: int = 1) -> dict:
    clients = Clients(svc, n, processes)
    try:
        await clients.connect()
        await asyncio.sleep(WARM_UP)
        stages0, threads0, frames0 = await stage_seconds(svc)
        start, cpu0 = time.monotonic(), svc.cpu_seconds()
        gap = min(TALK_GAP, (seconds - 1.0) / n) if talk else None   # every client talks within the window
        fps, client_cpu, ids, size = await clients.window(start, seconds, gap)
        end, cpu1 = time.monotonic(), svc.cpu_seconds()
        stages1, threads1, frames1 = await stage_seconds(svc)
        return {"n": n, "fps": fps, "server_cpu": (cpu1 - cpu0) / (end - start),
                "client_cpu": client_cpu / (end - start), "size": size,
                "stages": {k: (stages1[k] - stages0[k]) / (end - start) for k in STAGES},
                "threads": {k: (threads1[k] - threads0.get(k, 0.0)) / (end - start) for k in threads1},
                "shared": shared_share(frames0, frames1), "ids": ids}
    finally:
        await clients.close()


async def late_share(svc: Fleet, ids: set[str], wait: float = 10.0) -> float:
    """Share of these sessions' frames the server handed to the encoder late (from its end-of-session log)."""
    deadline = time.monotonic() + wait
    while True:
        ended = [record for record in svc.session_ends() if record["session"] in ids]
        if len(ended) == len(ids) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    frames = sum(record["frames"] for record in ended)
    return sum(record["frames_late"] for record in ended) / frames if frames else float("nan")


async def sweep(svc: Fleet, max_n: int, step: int, seconds: float, talk: bool, processes: int = 1) -> list[dict]:
    results = []
    for n in sorted({1, *range(step, max_n + 1, step)}):
        result = await run_level(svc, n, seconds, talk, processes)
        results.append(result)
        result["late"] = await late_share(svc, result["ids"])
        fps = result["fps"]
        print(f"  {n} session(s) at {result['size'][0]}x{result['size'][1]}: fps min {min(fps):5.1f} "
              f"mean {sum(fps) / n:5.1f} | server CPU {result['server_cpu'] * 100:5.1f}% of one core "
              f"({result['server_cpu'] * 100 / n:5.1f}% per session) | clients' CPU {result['client_cpu'] * 100:5.1f}% | "
              f"frames handed over late {result['late']:6.1%}", flush=True)
        print("      server time per session (% of one core): " + ", ".join(
            f"{stage} {seconds * 100 / n:4.1f}%" for stage, seconds in result["stages"].items())
            + f"; frames from the shared idle stream {result['shared']:.0%}", flush=True)
        busiest = sorted(result["threads"].items(), key=lambda item: -item[1])[:4]
        print("      server threads, all sessions (% of one core): " + ", ".join(
            f"{pool} {seconds * 100:5.1f}%" for pool, seconds in busiest), flush=True)
        if min(fps) < HOLD_FPS:
            break
        await asyncio.sleep(2.0)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max", type=int, default=16)
    parser.add_argument("--step", type=int, default=1, help="sessions added per level after the first")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--idle", action="store_true", help="the clients never talk: idle (listening) sessions only")
    parser.add_argument("--avatar", default="default", help="'default' or an avatar bundle made by `avatar build`")
    parser.add_argument("--no-shared-idle", action="store_true", help="every frame encoded per session")
    parser.add_argument("--instances", type=int, default=1, help="service processes (`avatar serve` each, "
                        "as several instances behind a sticky load balancer); the clients go to them in turn")
    parser.add_argument("--client-processes", type=int, default=1, help="spread the clients over this many "
                        "processes (default 1: all in this one)")
    parser.add_argument("--clients", help=argparse.SUPPRESS)      # a client process's own run (JSON spec)
    args = parser.parse_args()
    if args.clients is not None:
        with loopback_only():
            return asyncio.run(client_process(json.loads(args.clients)))
    if args.instances < 1 or args.client_processes < 1:
        parser.error("--instances and --client-processes must be 1 or more")
    print(f"machine: {os.cpu_count()} CPU cores (shared with other users: figures vary with their load)")
    print(f"avatar: {args.avatar}")
    os.environ.setdefault("AVATAR_MAX_LATE_SHARE", "1")   # measure past the point where new sessions get 503
    os.environ["AVATAR_CLIENT_LIMITS"] = "false"          # every client here is 127.0.0.1
    os.environ["AVATAR_SHARED_IDLE"] = "false" if args.no_shared_idle else "true"
    print(f"shared idle stream: {'off' if args.no_shared_idle else 'on'}")
    print(f"instances: {args.instances}; client processes: {args.client_processes}")
    with contextlib.ExitStack() as stack:
        fleet = Fleet([stack.enter_context(service(max_sessions=args.max + 1, avatar=args.avatar))
                       for _ in range(args.instances)])
        stack.enter_context(loopback_only())
        results = asyncio.run(sweep(fleet, args.max, args.step, args.seconds, not args.idle,
                                    args.client_processes))
    held = [r for r in results if min(r["fps"]) >= HOLD_FPS]
    one = results[0]
    print(f"\none session alone: {one['fps'][0]:.1f} fps, {one['server_cpu'] * 100:.1f}% of one core (it alone "
          "pays for the shared idle stream's render and encode, which serve every listening viewer)")
    if held:
        most = held[-1]
        print(f"per session at {most['n']} sessions, the most that held {HOLD_FPS:.0f} fps: "
              f"{most['server_cpu'] * 100 / most['n']:.1f}% of one core (target <= 6%)")
    print(f"concurrent sessions holding >= {HOLD_FPS:.0f} fps: {held[-1]['n'] if held else 0} (target >= 16)")


if __name__ == "__main__":
    main()
