"""Export speed: seconds of dialogue video written per second of wall time (real-time factor).

Loads the bot and the avatar first (not timed), then times `export_dialogue` on a dialogue file.
    .venv/bin/python bench/export_speed.py [--dialogue assets/dialogues/paper.txt] [--repeats 3] [--avatar BUNDLE]
                                           [--psnr]
Prints each run's speed and the file's video bitrate; with --psnr, also the PSNR of an export's frames against
a lossless export (x264 crf 0) of the same dialogue with the same seed, made just after it.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from avatar.dialogue import read_dialogue
from avatar.export import ExportOptions, export_dialogue
from avatar.pipeline import AvatarEngine, AvatarSettings
from bot.responder import BotSettings, ChatResponder

REPO = Path(__file__).resolve().parents[1]


def psnr(video: Path, reference: Path) -> float:
    """PSNR (dB) over all planes of all frames of `video` against `reference` (same frame count)."""
    def planes(path: Path) -> list[np.ndarray]:
        with av.open(str(path)) as container:
            return [f.to_ndarray(format="yuv420p").astype(np.float64) for f in container.decode(video=0)]
    errors = [np.mean((a - b) ** 2) for a, b in zip(planes(video), planes(reference), strict=True)]
    return float(10 * np.log10(255 ** 2 / np.mean(errors)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dialogue", type=Path, default=REPO / "assets" / "dialogues" / "paper.txt")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--captions", action="store_true")
    parser.add_argument("--avatar", default="default", help="'default' or an avatar bundle made by `avatar build`")
    parser.add_argument("--psnr", action="store_true", help="also compare run 1 with a lossless export")
    args = parser.parse_args()

    lines = read_dialogue(args.dialogue)
    t0 = time.perf_counter()
    engine = AvatarEngine.from_settings(AvatarSettings(avatar=args.avatar))
    responder = ChatResponder.create(BotSettings(show_progress=False))
    print(f"setup (bot + avatar, not counted): {time.perf_counter() - t0:.2f} s")
    print(f"avatar: {engine.name}; dialogue: {args.dialogue.name}, {len(lines)} lines; frame {engine.frame_size[0]}x{engine.frame_size[1]}, "
          f"captions={'on' if args.captions else 'off'}, cores={os.cpu_count()}")
    factors = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            cpu0, t0 = time.process_time(), time.perf_counter()
            result = export_dialogue(lines, responder, engine.performer(seed=i), Path(tmp) / f"run{i}.mp4",
                                     ExportOptions(captions=args.captions))
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            factors.append(result.duration / wall)
            kbits = result.video.stat().st_size * 8 / result.duration / 1000
            print(f"run {i + 1}: {result.duration:.2f} s of video in {wall:.2f} s wall ({cpu:.2f} s CPU): "
                  f"{result.duration / wall:.1f}x real time, {result.n_frames / wall:.0f} frames/s, {kbits:.0f} kbit/s")
        if args.psnr:      # the same dialogue twice more, back to back: as set, and lossless
            pair = [export_dialogue(lines, responder, engine.performer(seed=0), Path(tmp) / f"{name}.mp4",
                                    ExportOptions(captions=args.captions, **options)).video
                    for name, options in (("as_set", {}), ("lossless", {"crf": 0}))]
            print(f"PSNR against a lossless export of the same frames: {psnr(*pair):.1f} dB")
    factors.sort()
    print(f"real-time factor: median {factors[len(factors) // 2]:.1f}x, best {factors[-1]:.1f}x (target >= 30x)")


if __name__ == "__main__":
    main()
