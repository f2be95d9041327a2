"""Speech synthesis latency: ms per reply for espeak-ng -> 48 kHz PCM + phoneme timeline -> mouth targets.

Prints p50/p95 per stage and the real-time factor (seconds of speech per second of compute), for typical
1-2 sentence replies, then the same from several threads at once (calls take turns on espeak's one engine).
Usage: .venv/bin/python bench/tts_latency.py [--repeats 5] [--threads 4] [--voice en-us] [--rate 165]
"""
from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from avatar.visemes import mouth_targets  # noqa: E402
from avatar.voice import EspeakVoice, VoiceSettings, _engine, _resample  # noqa: E402

REPLIES = [
    "Hello! How can I help you today?",
    "Artificial Intelligence is the branch of engineering and science devoted to constructing machines that think.",
    "Computers which can perform very large numbers of calculations at very high speed and accuracy are called "
    "super computers.",
    "Computers are very dumb. They only execute instructions given by humans.",
    "It's hard to say, but The ENIAC is regarded as the first 'real' computer. It was developed at University of "
    "Pennsylvania in 1946.",
    "Gregory said I respond to the current line, not with respect to the entire conversation. Does that count as "
    "gossip?",
    "We are open from nine in the morning to six in the evening, Monday to Friday.",
    "Goodbye, and thank you for talking with me.",
]


def percentiles(ms: list[float]) -> str:
    return f"p50 {np.percentile(ms, 50):6.1f} ms   p95 {np.percentile(ms, 95):6.1f} ms   max {max(ms):6.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="passes over the replies")
    parser.add_argument("--threads", type=int, default=4, help="threads for the concurrent run")
    parser.add_argument("--voice", default="en-us")
    parser.add_argument("--rate", type=int, default=165)
    args = parser.parse_args()

    voice = EspeakVoice(VoiceSettings(voice=args.voice, rate=args.rate))
    voice.synthesize("Warm up.")
    engine = _engine()
    stages: dict[str, list[float]] = {"espeak": [], "resample": [], "synthesize (total)": [], "mouth targets": []}
    spoken = computed = 0.0
    for _ in tqdm(range(args.repeats), desc="passes"):
        for text in REPLIES:
            t0 = time.perf_counter()
            native, _ = engine.synth(text, voice.settings)
            t1 = time.perf_counter()
            _resample(native, engine.sample_rate)
            t2 = time.perf_counter()
            speech = voice.synthesize(text)
            t3 = time.perf_counter()
            mouth_targets(speech)
            t4 = time.perf_counter()
            for stage, seconds in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                stages[stage].append(1000 * seconds)
            spoken += speech.duration
            computed += (t3 - t2) + (t4 - t3)

    n = len(stages["synthesize (total)"])
    print(f"\n{n} replies, {spoken / n:.2f} s of speech each on average, voice {args.voice} at {args.rate} wpm")
    for stage, ms in stages.items():
        print(f"  {stage:<20} {percentiles(ms)}")
    print(f"  real-time factor     {spoken / computed:6.1f}x  (synthesize + mouth targets)")

    jobs = REPLIES * args.repeats
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.threads) as pool:
        latencies = list(pool.map(lambda text: timed(voice, text), jobs))
    wall = time.perf_counter() - start
    print(f"\n{args.threads} threads, {len(jobs)} replies: {len(jobs) / wall:.1f} replies/s, "
          f"latency per call (incl. waiting for the engine) {percentiles(latencies)}")


def timed(voice: EspeakVoice, text: str) -> float:
    start = time.perf_counter()
    voice.synthesize(text)
    return 1000 * (time.perf_counter() - start)


if __name__ == "__main__":
    main()
