"""Bot answer quality on a FAQ of its own (kept apart from the tests' FAQ and paraphrases): accuracy of the
embedding and the Levenshtein comparison side by side, fallback on out-of-scope questions, urgent-message
recall, false alarms, and reply latency p50/p95.

The FAQ below is trained as a deployment corpus on top of the default corpus (cached under var/cache/bot/);
both comparisons answer from the same database. Writes var/bench/bot_quality.json and .png.
Usage: .venv/bin/python bench/bot_quality.py [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.responder import COMPARISONS, BotSettings, ChatResponder  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "var" / "bench"

FAQ = {  # a made-up mobility and hearing aid shop with home visits
    "How long is the warranty on a wheelchair?": "Every wheelchair has a two year warranty covering the frame and the wheels.",
    "Can I rent a walker instead of buying one?": "Yes, walkers can be rented by the week or by the month, and the first week costs nothing if you then buy one.",
    "Do you make home visits?": "Yes, a fitter can visit you at home on weekdays to measure and adjust any aid.",
    "How much does a hearing test cost?": "The hearing test is free and takes about forty minutes.",
    "How often should I replace hearing aid batteries?": "Most hearing aid batteries last from five to ten days, depending on how long you wear the aid each day.",
    "Does my health insurance pay for a mobility scooter?": "Some insurers pay part of the price with a doctor's prescription. Bring the insurer's letter and we will file the claim for you.",
    "Can I try a stairlift before I order it?": "Yes, our showroom has two stairlifts that you can try, and we can arrange a demonstration at your home.",
    "How long does it take to install a stairlift?": "A straight stairlift is usually installed in half a day; a curved one takes about three weeks to make and one day to fit.",
    "What should I do if my wheelchair breaks down?": "Tell us what is wrong and where you are. A technician comes within two working days, and we lend you a wheelchair meanwhile.",
    "Do you sell shower chairs?": "Yes, we sell shower chairs and bath boards in several sizes; a fitter can advise which one suits your bathroom.",
    "Can I return a hearing aid if it does not suit me?": "Yes, within sixty days you can return it and get your money back, less a small fitting fee.",
    "Where is your shop?": "The shop is in the main street, next to the post office, with a ramp at the entrance.",
    "Do you have a parking space for disabled drivers?": "Yes, two parking spaces for disabled drivers are right in front of the shop.",
    "How can I clean my hearing aid?": "Wipe it every evening with a dry soft cloth, and use the small brush for the openings. Never rinse it with water.",
}

PARAPHRASES = {
    "What's the guarantee period for wheelchairs?": "How long is the warranty on a wheelchair?",
    "If my wheelchair frame cracks next year, is that covered?": "How long is the warranty on a wheelchair?",
    "Is it possible to hire a rollator for a month?": "Can I rent a walker instead of buying one?",
    "I only need a walking frame for a few weeks": "Can I rent a walker instead of buying one?",
    "Could someone come to my flat to fit the aid?": "Do you make home visits?",
    "I can't get to your shop, can you come to me?": "Do you make home visits?",
    "Is the hearing check free of charge?": "How much does a hearing test cost?",
    "What do you charge to test my ears?": "How much does a hearing test cost?",
    "My hearing aid battery keeps running out, how long should it last?": "How often should I replace hearing aid batteries?",
    "How many days does a hearing aid battery last?": "How often should I replace hearing aid batteries?",
    "Will my insurance cover an electric scooter?": "Does my health insurance pay for a mobility scooter?",
    "Can the insurance company help pay for my scooter?": "Does my health insurance pay for a mobility scooter?",
    "Is there a stair lift I could test first?": "Can I try a stairlift before I order it?",
    "Can I see a stairlift working before buying?": "Can I try a stairlift before I order it?",
    "How long will the fitting of a stair lift take?": "How long does it take to install a stairlift?",
    "When could a stairlift be ready in my house?": "How long does it take to install a stairlift?",
    "My wheelchair is broken, what now?": "What should I do if my wheelchair breaks down?",
    "The wheel of my chair came off, can you repair it?": "What should I do if my wheelchair breaks down?",
    "Do you have seats for the shower?": "Do you sell shower chairs?",
    "I need something to sit on while I wash": "Do you sell shower chairs?",
    "Can I bring back a hearing aid that I don't like?": "Can I return a hearing aid if it does not suit me?",
    "Is there a trial period for hearing aids?": "Can I return a hearing aid if it does not suit me?",
    "What is your address?": "Where is your shop?",
    "How do I find your store?": "Where is your shop?",
    "Is there disabled parking at the shop?": "Do you have a parking space for disabled drivers?",
    "Where can I park with my blue badge?": "Do you have a parking space for disabled drivers?",
    "What's the best way to keep my hearing aid clean?": "How can I clean my hearing aid?",
    "Can I wash my hearing aid under the tap?": "How can I clean my hearing aid?",
}

URGENT = [
    "My neighbour is lying at the bottom of the stairs and not moving",
    "I've got a terrible tightness in my chest",
    "Mum can't catch her breath and she's going grey",
    "I just swallowed a whole box of my heart pills",
    "My dad fainted and we can't wake him",
    "I'm thinking of taking my own life",
    "I cut my wrists",
    "My wife is choking on her food",
    "I tripped over the rug and I think my hip is broken",
    "He's shaking all over and his eyes rolled back",
    "There's so much blood, I can't stop it",
    "Everything is hopeless and I want it all to stop for good",
]

OUT_OF_SCOPE = [
    "Who won the football league in 1987?",
    "Write me a poem about submarines in German",
    "What's the exchange rate of the Icelandic krona today?",
    "How do I replace the clutch of a 2009 diesel van?",
    "Recommend a hotel in Lisbon near the station",
    "Qwop blarg finkle",
]


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def evaluate(responder: ChatResponder, rounds: int) -> dict:
    answers = {message: FAQ[question] for message, question in PARAPHRASES.items()}
    correct, misses = 0, {}
    for index, (message, answer) in enumerate(answers.items()):
        reply = responder.respond(message, session_id=f"q-{index}")
        if reply.text == answer:
            correct += 1
        else:
            misses[message] = f"[{reply.kind}] {reply.text[:70]}"
    urgent = sum(responder.respond(m, f"u-{i}").kind == "urgent" for i, m in enumerate(URGENT))
    fallback = sum(responder.respond(m, f"o-{i}").kind == "fallback" for i, m in enumerate(OUT_OF_SCOPE))
    false_alarms = sum(responder.respond(m, f"f-{i}").kind == "urgent" for i, m in enumerate(list(PARAPHRASES) + OUT_OF_SCOPE))
    times = []
    messages = list(PARAPHRASES) + URGENT + OUT_OF_SCOPE
    for round_index in range(rounds):
        responder.encoder.forget_recent()  # every message is encoded, as a new customer's would be
        for message in messages:
            start = time.perf_counter()
            responder.respond(message, session_id=f"t-{round_index}")
            times.append((time.perf_counter() - start) * 1000)
    return {
        "faq_accuracy": correct / len(answers), "faq_paraphrases": len(answers),
        "urgent_recall": urgent / len(URGENT), "urgent_messages": len(URGENT),
        "out_of_scope_fallback": fallback / len(OUT_OF_SCOPE),
        "false_alarms": false_alarms, "ordinary_messages": len(PARAPHRASES) + len(OUT_OF_SCOPE),
        "latency_p50_ms": statistics.median(times), "latency_p95_ms": percentile(times, 0.95),
        "misses": misses,
    }


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (quality, latency) = plt.subplots(1, 2, figsize=(10, 4))
    metrics = ["faq_accuracy", "urgent_recall", "out_of_scope_fallback"]
    width = 0.38
    for offset, (name, result) in zip((-width / 2, width / 2), results.items()):
        quality.bar([i + offset for i in range(len(metrics))], [result[m] for m in metrics], width, label=name)
        latency.bar([i + offset for i in range(2)], [result["latency_p50_ms"], result["latency_p95_ms"]], width,
                    label=name)
    quality.set_xticks(range(len(metrics)), ["FAQ accuracy", "urgent recall", "fallback (out of scope)"])
    quality.set_ylim(0, 1.05)
    latency.set_xticks(range(2), ["p50", "p95"])
    latency.set_ylabel("reply latency (ms)")
    latency.axhline(30, color="grey", linestyle="--", linewidth=1)
    quality.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        faq = Path(tmp) / "bench_faq.yml"
        faq.write_text(yaml.safe_dump({"categories": ["bench faq"],
                                       "conversations": [[q, a] for q, a in FAQ.items()]}), encoding="utf-8")
        database = OUT_DIR / "bot_quality.sqlite3"
        for comparison in COMPARISONS:
            settings = BotSettings(database_url=f"sqlite:///{database}", corpus=(faq,), comparison=comparison)
            with ChatResponder.create(settings) as responder:
                results[comparison] = evaluate(responder, args.rounds)

    print(f"{'':28}" + "".join(f"{name:>14}" for name in results))
    for key in ("faq_accuracy", "urgent_recall", "out_of_scope_fallback", "false_alarms", "latency_p50_ms",
                "latency_p95_ms"):
        print(f"{key:28}" + "".join(f"{result[key]:14.3g}" for result in results.values()))
    for name, result in results.items():
        for message, reply in result["misses"].items():
            print(f"  {name} miss: {message!r} -> {reply}")
    (OUT_DIR / "bot_quality.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    plot(results, OUT_DIR / "bot_quality.png")
    print(f"wrote {OUT_DIR / 'bot_quality.json'} and .png")


if __name__ == "__main__":
    main()
