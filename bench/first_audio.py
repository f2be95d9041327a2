"""Time from a chat message (data channel) to the first audible frame of the spoken reply at an aiortc client,
and where that time goes.

Runs the real service (bot, voice, renderer) in a child process and one client here. Per message it records:
- at the service (the "speaking" event's timing_ms): the bot's reply; speech synthesis and motion planning of
  the reply's first piece (queueing on the speech pool included); the wait until the first sample is due (the next 10 ms audio packet,
  or the video frame due nearest to it, whichever is later);
- at the client: when the "reply" and "speaking" events arrive; when the first audio packet of speech reaches
  the socket (before the jitter buffer); when the first audible decoded frame comes out of aiortc's receiver,
  whose audio jitter buffer holds each packet until 4 more have come (80 ms of 20-ms packets).
The rest ("delivery") is the data channel's way in plus the sender's pacing, encoding and the way back.

With chromium among --clients, headless Chromium (Debian's, as the browser tests use it) opens the page in a
loopback-only network namespace (`unshare -n`, as root) with the real service in that process, sends the same
messages on the page's chat channel and times each until a WebAudio analyser on the received stream hears it
(tests/streaming/browser_driver.py --first-audio).

Usage: .venv/bin/python bench/first_audio.py [--messages 20] [--clients aiortc,chromium]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
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
STAGES = ("server: bot reply", "server: first piece", "server: first sample due", "delivery",
          "client: jitter buffer")


async def measure(url: str, n: int) -> dict[str, list[float]]:
    """Seconds from sending each message to each milestone, and per stage."""
    probe = AvatarProbe(url)
    times: dict[str, list[float]] = {name: [] for name in (
        "reply event", "speaking event", "first speech packet", "first audio", *STAGES)}
    try:
        await probe.connect()
        await probe.wait_for_media()
        await asyncio.sleep(2.0)
        for i in tqdm(range(n), desc="messages"):
            sent = probe.say(MESSAGES[i % len(MESSAGES)])
            await probe.next_event("reply", timeout=60)
            times["reply event"].append(time.monotonic() - sent)
            speaking = await probe.next_event("speaking", timeout=60)
            times["speaking event"].append(time.monotonic() - sent)
            await probe.next_event("done", timeout=60)
            packet = probe.received.first_speech_packet(sent)
            audible = probe.received.first_loud_audio(sent)
            if audible is not None:
                times["first audio"].append(audible - sent)
            if packet is not None and audible is not None:
                server = speaking["timing_ms"]
                stages = [server["bot"] / 1000, server["speech"] / 1000, server["boundary"] / 1000]
                stages += [packet - sent - sum(stages), audible - packet]
                times["first speech packet"].append(packet - sent)
                for name, seconds in zip(STAGES, stages):
                    times[name].append(seconds)
            await asyncio.sleep(1.0)                 # silence before the next message (the packet rule needs it)
    finally:
        await probe.close()
    return times


def measure_chromium(n: int) -> list[float]:
    """Seconds from sending each message in the page to hearing its reply (None-free: unheard ones left out)."""
    driver = Path(__file__).resolve().parents[1] / "tests" / "streaming" / "browser_driver.py"
    with tempfile.TemporaryDirectory() as folder:
        messages, out = Path(folder) / "messages.json", Path(folder) / "result.json"
        messages.write_text(json.dumps([MESSAGES[i % len(MESSAGES)] for i in range(n)]))
        subprocess.run(["unshare", "-n", sys.executable, str(driver), "--parts", "real", "--out", str(out),
                        "--first-audio", str(messages)], check=True, timeout=600)
        result = json.loads(out.read_text())
    return [ms / 1000 for ms in result["first_audio_ms"] if ms is not None]


def show(name: str, values: list[float]) -> None:
    if values:
        ms = np.array(values) * 1000
        print(f"  {name:24s} p50 {np.percentile(ms, 50):7.1f} ms   p95 {np.percentile(ms, 95):7.1f} ms   "
              f"min {ms.min():6.1f}  max {ms.max():6.1f}  (n={len(ms)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--clients", default="aiortc,chromium", help="aiortc, chromium or both")
    args = parser.parse_args()
    clients = args.clients.split(",")
    if "aiortc" in clients:
        with service() as svc, loopback_only():
            times = asyncio.run(measure(svc.url, args.messages))
        print(f"\naiortc client: from sending a chat message to ... ({args.messages} messages; target: first audio "
              "p50 <= 100 ms, p95 <= 150 ms)")
        for name, values in times.items():
            if name == STAGES[0]:
                print("where the time to first audio goes (messages whose first speech packet was seen; the stages "
                      "add up to their first audio):")
            show(name, values)
        missing = args.messages - len(times["first audio"])
        if missing:
            print(f"  {missing} replies produced no audible audio")
    if "chromium" in clients:
        heard = measure_chromium(args.messages)
        print(f"\nChromium page: from sending a chat message to hearing the reply ({args.messages} messages; "
              "target: p50 <= 150 ms)")
        show("first audio", heard)
        if len(heard) < args.messages:
            print(f"  {args.messages - len(heard)} replies were not heard")


if __name__ == "__main__":
    main()
