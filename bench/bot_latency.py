"""Bot reply latency: ChatResponder.reply over the paper's questions, customer-service questions and others.

Each round asks every message in a fresh session, with the embeddings of earlier messages forgotten (a
corpus prompt's embedding is stored at training, so asking one costs no encoding; any other message is
encoded every time). Prints p50/p95/max per group and overall; with --stock, also times ChatterBot's own
database search (IndexedTextSearch + BestMatch, Levenshtein) on the same messages.
Usage: .venv/bin/python bench/bot_latency.py [--rounds 10] [--db PATH] [--comparison embedding|levenshtein] [--stock]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.responder import COMPARISONS, BotSettings, ChatResponder, as_database_url, default_database_url  # noqa: E402

MESSAGES = {
    "paper": ["Do you know gossip?", "What is AI?", "What is a super computer?", "How does a computer work?",
              "What was the first computer?"],
    "customer service": ["What are your opening hours?", "I want to talk to a human", "What can you do?",
                         "Can I speak to a real person?", "Goodbye"],
    "urgent": ["My husband collapsed and is not waking up", "I want to die"],
    "other": ["Hello", "Tell me a joke", "who made you", "what is the meaning of life", "are you a robot",
              "when do you open", "my order has not arrived yet", "What's the weather like today?",
              "I'd like to know why my invoice is wrong and who I should contact about it", "\U0001f600"],
}


def percentiles(samples_ms: list[float]) -> str:
    ordered = sorted(samples_ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (f"p50 {statistics.median(ordered):6.1f} ms   p95 {p95:6.1f} ms   "
            f"max {ordered[-1]:6.1f} ms   (n={len(ordered)})")


def time_responder(responder: ChatResponder, rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {group: [] for group in MESSAGES}
    for round_index in range(rounds):
        responder.encoder.forget_recent()
        for group, messages in MESSAGES.items():
            for message in messages:
                start = time.perf_counter()
                responder.reply(message, session_id=f"bench-{round_index}")
                times[group].append((time.perf_counter() - start) * 1000)
    return times


def time_stock(database_url: str, rounds: int) -> list[float]:
    """ChatterBot as shipped (database search), read-only, same tagger, first-response selection."""
    from chatterbot import ChatBot
    from chatterbot.tagging import LowercaseTagger

    chatbot = ChatBot("stock", database_uri=database_url, tagger=LowercaseTagger, read_only=True)
    samples = []
    try:
        for _ in range(rounds):
            for messages in MESSAGES.values():
                for message in messages:
                    start = time.perf_counter()
                    chatbot.get_response(message)
                    samples.append((time.perf_counter() - start) * 1000)
    finally:
        chatbot.storage.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--db", help="the bot's database, a URL or an SQLite file's path "
                                     "(default: $AVATAR_DATABASE_URL or var/bot.sqlite3)")
    parser.add_argument("--comparison", choices=COMPARISONS, default=BotSettings.comparison)
    parser.add_argument("--stock", action="store_true", help="also time ChatterBot's own search (slow)")
    args = parser.parse_args()

    url = as_database_url(args.db) if args.db else default_database_url()
    start = time.perf_counter()
    responder = ChatResponder.create(BotSettings(database_url=url, comparison=args.comparison))
    print(f"ready in {time.perf_counter() - start:.1f} s ({url}, {args.comparison} comparison)")
    with responder:
        times = time_responder(responder, args.rounds)
    for group, samples in times.items():
        print(f"{group:>17}: {percentiles(samples)}")
    print(f"{'all':>17}: {percentiles([t for samples in times.values() for t in samples])}")
    if args.stock:
        print(f"{'stock ChatterBot':>17}: {percentiles(time_stock(url, max(1, args.rounds // 5)))}")


if __name__ == "__main__":
    main()
