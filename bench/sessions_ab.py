"""A/B of two checkouts of the service: CPU per talking session, interleaved so that the machine's drift
(other users of a shared host) falls on both alike.

    git worktree add ../before REV
    .venv/bin/python bench/sessions_ab.py [--sessions 8] [--rounds 4] [--seconds 20] before=../before after=.

Each round starts the service of each checkout in turn (its own code: `python -m streaming.server` from that
folder), connects --sessions aiortc clients, lets each say one message (a reply of about 6 s) in the --seconds
window, and reads the server's CPU, the clients' CPU and the server's stage times as `bench/sessions.py` does
(the clients are the checkout's own harness). Prints each run and the medians per checkout.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

RESULT = "RESULT "


def one_run(checkout: Path, sessions: int, seconds: float) -> None:
    """In a child process: one level of `bench/sessions.py` against `checkout`'s service; prints RESULT json."""
    sys.path[:0] = [str(checkout), str(checkout / "bench")]
    os.environ.update(AVATAR_MAX_LATE_SHARE="1", AVATAR_CLIENT_LIMITS="false", AVATAR_SHARED_IDLE="true")
    from harness import loopback_only
    from harness.service import service
    import sessions as bench
    with service(max_sessions=sessions + 1) as svc, loopback_only():
        target = bench.Fleet([svc]) if hasattr(bench, "Fleet") else svc      # checkouts from before --instances
        out = asyncio.run(bench.run_level(target, sessions, seconds, True))
    print(RESULT + json.dumps({"server": out["server_cpu"] * 100 / sessions,
                               "clients": out["client_cpu"] * 100 / sessions, "slowest_fps": min(out["fps"]),
                               **{stage: v * 100 / sessions for stage, v in out["stages"].items()}}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)     # the child's own run
    parser.add_argument("checkouts", nargs="*", metavar="NAME=DIR")
    args = parser.parse_args()
    if args.one is not None:
        return one_run(args.one.resolve(), args.sessions, args.seconds)
    named = [(name, str(Path(path).resolve())) for name, path in (item.partition("=")[::2] for item in args.checkouts)]
    if len(named) < 2 or any(not name or not (Path(path) / "streaming").is_dir() for name, path in named):
        parser.error("give two or more NAME=DIR, each DIR a checkout of this project")
    rows: dict[str, list[dict]] = {name: [] for name, _ in named}
    print("% of one core per session (server, clients, stages); slowest session's fps")
    for _ in range(args.rounds):
        for name, path in named:
            child = subprocess.run([sys.executable, __file__, "--one", path, "--sessions", str(args.sessions),
                                    "--seconds", str(args.seconds)], capture_output=True, text=True, cwd=path)
            found = [line for line in child.stdout.splitlines() if line.startswith(RESULT)]
            if not found:
                print(f"{name}: the run failed\n{child.stderr[-2000:]}")
                continue
            rows[name].append(json.loads(found[0][len(RESULT):]))
            print(name, {k: round(v, 2) for k, v in rows[name][-1].items()}, flush=True)
    for name, runs in rows.items():
        if runs:
            medians = {k: round(statistics.median(r[k] for r in runs), 2) for k in runs[0]}
            print(f"median of {len(runs)}: {name}", medians)


if __name__ == "__main__":
    main()
