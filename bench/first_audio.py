"""Time from a chat message (data channel) to the first audible frame of the spoken reply at an aiortc client.

Runs the real service (bot, voice, renderer) in a child process and one client here; prints p50/p95.
Usage: .venv/bin/python bench/first_audio.py [--messages 20]
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from harness.service import service  # noqa: E402
from harness import loopback_only  # noqa: E402
from harness.probe import AvatarProbe  # noqa: E402

MESSAGES = [
    "Hello", "What is AI?", "Do you know gossip?", "What is a super computer?", "How does a computer work?",
    "What was the first computer?", "What can you do?", "Good morning", "Who are you?", "Tell me a joke",
    "What time do you open?", "Can I talk to a human?", "How are you?", "Goodbye", "Do you like music?",
    "What is your name?", "Are you a robot?", "Thank you", "What is the weather like?", "Nice to meet you",
]


async def measure(url: str, n: int) -> dict[str, list[float]]:
    probe = AvatarProbe(url)
    times: dict[str, list[float]] = {"reply event": [], "speaking event": [], "first audio": []}
    try:
        await probe.connect()
        await probe.wait_for_media()
        await asyncio.sleep(2.0)
        for i in tqdm(range(n), desc="messages"):
            sent = probe.say(MESSAGES[i % len(MESSAGES)])
            await probe.next_event("reply", timeout=60)
            times["reply event"].append(time.monotonic() - sent)
            await probe.next_event("speaking", timeout=60)
            times["speaking event"].append(time.monotonic() - sent)
            await probe.next_event("done", timeout=60)
            first = probe.received.first_loud_audio(sent)
            if first is not None:
                times["first audio"].append(first - sent)
            await asyncio.sleep(0.5)
    finally:
        await probe.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20)
    args = parser.parse_args()
    with service() as svc, loopback_only():
        times = asyncio.run(measure(svc.url, args.messages))
    print(f"\nfrom sending a chat message to ... ({args.messages} messages; target: first audio p50 <= 300 ms)")
    for name, values in times.items():
        if values:
            ms = np.array(values) * 1000
            print(f"  {name:15s} p50 {np.percentile(ms, 50):7.1f} ms   p95 {np.percentile(ms, 95):7.1f} ms   "
                  f"min {ms.min():6.1f}  max {ms.max():6.1f}  (n={len(ms)})")
    missing = args.messages - len(times["first audio"])
    if missing:
        print(f"  {missing} replies produced no audible audio")


if __name__ == "__main__":
    main()
