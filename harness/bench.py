"""What the training benchmarks (bench/synth_train.py, bench/swap_speed.py) share: their common options and the
way they report (JSON on stdout, and in a file when asked)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def training_bench_parser(doc: str, seconds: float) -> argparse.ArgumentParser:
    """A parser with --seconds (of timed steps), --threads (torch's) and --json (also write the figures there)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=seconds, help="timed training steps, per preset")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    return parser


def report(results: dict | list, json_path: Path | None) -> None:
    print(json.dumps(results, indent=1))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=1))
