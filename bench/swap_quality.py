"""Benchmark: quality of the face swap on the shared footage, and the paper's comparison of src face sets.

    .venv/bin/python bench/swap_quality.py [--iters 3000] [--n 1000] [--every 1] [--gan-faces FACES]
                                           [--sets gan,random,monotone,self] [--frames N] [--preset cpu64]
                                           [--run NAME=RUN ...] [--out var/bench/swap_quality]

Each src set trains its own fresh swap run (`--preset`, the same budget of --iters steps each) with
dst = driving_B, then the run is applied to driving_B and the output is measured against the untouched clip:
- identity: face_recognition distance of each output face to the subject (mean embedding of subject_A's real
  frames) and to the driving person (mean of driving_B's); share of usable frames whose output face is closer to
  the subject (target 90%; a frame where no face is found counts against it), and the same among found faces;
- motion kept: correlation of mouth opening on output and driving frames (target 0.9); head pose error
  (eye-line angle in degrees, eye midpoint in pixels);
- temporal stability: mean frame-to-frame change of the face region's mean Lab colour, output / driving
  (target <= 1.2), and landmark jitter (mean second difference of the landmarks), output / driving, each with
  the merge's temporal smoothing on and, for comparison, off.
The src sets (the paper's comparison, left as future work there): "gan" = --gan-faces (the GAN's selected varied
faces from `avatar synth sample`), "random" = --n real subject_A frames at random, "monotone" = the --n most
monotone real frames (nearest the medoid expression). Real frames are prepared at 64 px (every --every-th
frame, cached in var/bench/). "self" is a reference, not a swap: the driving face itself, shrunk to the
preset's resolution and back, merged like a swap: the best the motion figures can be at that resolution.
`--run NAME=RUN` measures a swap run trained elsewhere (say `avatar swap train` for the preset's full budget)
as set NAME, without training. For each set that has src faces, the faces themselves are measured too (their
distance to the subject and the driver): a swap cannot be more the subject than the faces it learned from.
Writes results.json, strip-SET.png (driving frames above swapped ones) and side_by_side-SET.mp4 under --out.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from avatar.files import image_files
from avatar.runs import OPTIONS_FILE, latest_step, run_options, run_preset
from avatar.swap.data import SCAN_FILE, read_frames
from avatar.swap.merge import MergeOptions
from avatar.swap.model import get_preset
from avatar.swap.predictor import SwapFaceModel
from avatar.swap.quality import face_set_identity, mean_embedding, measure, strip
from avatar.swap.train import SwapTrainOptions, run_swap_training
from avatar.swap.video import held_frames, swap_clip, write_swapped_video

REPO = Path(__file__).resolve().parents[1]
VIDEOS = REPO.parent / "shared" / "data" / "videos"
SUBJECT = VIDEOS / "subject_A_man_indoor_60s.mp4"
DRIVING = VIDEOS / "driving_B_man_outdoor_35s.mp4"


def real_face_sets(n: int, every: int, out: Path) -> dict[str, Path]:
    """FACES folders of n random and of the n most monotone real subject_A frames (64 px, every `every`-th frame)."""
    from synth.dataset import load_metadata
    from synth.expression import expression_descriptor, monotone_subset
    from synth.prepare import PrepareOptions, prepare
    from synth.sample import export_real_faces

    dataset = REPO / "var" / "bench" / f"subject_A-64-every{every}"
    count = prepare([SUBJECT], dataset, PrepareOptions(size=64, every=every)).info.count
    landmarks = np.array([m["landmarks"] for m in load_metadata(dataset)], np.float32)
    picks = {"random": np.random.default_rng(0).choice(count, min(n, count), replace=False),
             "monotone": monotone_subset(expression_descriptor(landmarks), n)}
    folders = {}
    for name, indices in picks.items():
        folder = out / f"faces-{name}-{n}-every{every}"
        if not (folder / "metadata.json").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            export_real_faces(dataset, indices, folder)
        folders[name] = folder
    return folders


def through_resolution(resolution: int):
    """A predictor that returns the aligned driving faces themselves, shrunk to `resolution` and back, with a
    full mask: the reference set "self"."""
    def predict(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        size = faces.shape[1]
        small = [cv2.resize(f, (resolution, resolution), interpolation=cv2.INTER_AREA) for f in faces]
        out = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_CUBIC) for f in small])
        return out, np.ones(faces.shape[:3], np.float32)
    return predict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=3000, help="training steps per src set (default 3000)")
    parser.add_argument("--n", type=int, default=1000, help="faces per real src set (default 1000)")
    parser.add_argument("--every", type=int, default=1, help="real frames: every K-th frame of subject_A")
    parser.add_argument("--gan-faces", type=Path, default=None, help="FACES folder from `avatar synth sample`")
    parser.add_argument("--sets", default=None, help="any of gan, random, monotone, self (default: the first "
                        "three, or none when --run is given)")
    parser.add_argument("--frames", type=int, default=None, help="only the first N frames of driving_B")
    parser.add_argument("--preset", default="cpu64")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--run", action="append", default=[], metavar="NAME=RUN",
                        help="measure a trained swap run as set NAME (no training); may be repeated")
    parser.add_argument("--out", type=Path, default=REPO / "var" / "bench" / "swap_quality")
    args = parser.parse_args(argv)
    trained = {}
    for item in args.run:
        name, sep, run = item.partition("=")
        if not sep or not name or not (Path(run) / OPTIONS_FILE).is_file():
            parser.error(f"--run wants NAME=RUN with a swap run folder, got {item!r}")
        trained[name] = Path(run)
    if not (SUBJECT.exists() and DRIVING.exists()):
        print(f"skipped: {SUBJECT} or {DRIVING} not available")
        return 0
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    wanted = (args.sets or ("" if args.run else "gan,random,monotone")).split(",")
    real = [name for name in ("random", "monotone") if name in wanted]
    sets = {}
    if "gan" in wanted:
        if args.gan_faces is None:
            print("gan: no --gan-faces given (train a GAN and run `avatar synth sample RUN --n 1000`); skipped")
        else:
            count = len(image_files(args.gan_faces)) if args.gan_faces.is_dir() else 0
            if real and count != args.n:       # the comparison is of sets of one size
                parser.error(f"--gan-faces {args.gan_faces} holds {count} face images but --n is {args.n}: the "
                             f"real sets must be as large as the GAN's; pass --n {count}")
            sets["gan"] = args.gan_faces
    if real:
        sets.update((name, path) for name, path in real_face_sets(args.n, args.every, args.out).items()
                    if name in real)
    print("reference embeddings: subject_A (every 10th frame), driving_B (every 10th frame)")
    subject = mean_embedding(f for i, f in enumerate(read_frames(SUBJECT)) if i % 10 == 0)
    driver = mean_embedding(f for i, f in enumerate(read_frames(DRIVING)) if i % 10 == 0)
    driving = list(read_frames(DRIVING, args.frames))
    results = {}
    if "self" in wanted:
        sets["self"] = None
    sets.update(trained)
    for name, faces in sets.items():
        run = trained.get(name, args.out / f"run-{name}")
        t0 = time.perf_counter()
        if name in trained:
            predictor, reuse = SwapFaceModel.from_run(run), (run / SCAN_FILE,)
            faces = Path(run_options(run)["src"])
            entry = {"faces": str(faces), "train_minutes": None}
        elif faces is None:
            predictor = through_resolution(get_preset(args.preset).resolution)
            reuse = tuple(args.out.glob(f"run-*/{SCAN_FILE}"))       # another set's scan of driving_B
            entry = {"faces": "the driving faces themselves", "preset": f"(none: through {args.preset}'s size)",
                     "iterations": 0, "train_minutes": 0.0}
        else:
            shutil.rmtree(run, ignore_errors=True)
            run_swap_training(SwapTrainOptions(faces, DRIVING, run, preset=args.preset, iters=args.iters))
            predictor, reuse = SwapFaceModel.from_run(run), (run / SCAN_FILE,)
            entry = {"faces": str(faces), "train_minutes": round((time.perf_counter() - t0) / 60, 1)}
        if faces is not None:                            # a run, trained here or given with --run
            entry = {"preset": run_preset(run), **entry, "iterations": latest_step(run)}   # no second load
        if faces is not None and faces.is_dir():          # a run's src folder may have moved since it trained
            entry.update(face_set_identity(faces, subject, driver))
        for smoothing in ("on", "off"):
            options = MergeOptions() if smoothing == "on" else MergeOptions(landmark_sigma=0, colour_sigma=0)
            swapped = swap_clip(DRIVING, predictor, run / "scans" / "driving_B.npz", args.frames, options,
                                reuse=reuse)
            frames = held_frames(swapped, len(driving))
            usable = swapped.scan.usable[: len(driving)]
            entry[f"smoothing_{smoothing}"] = measure(frames, driving, swapped.scan.landmarks[: len(driving)],
                                                      usable, subject, driver)
            if smoothing == "on":
                strip(driving, frames, args.out / f"strip-{name}.png")
                write_swapped_video(DRIVING, swapped, args.out / f"side_by_side-{name}.mp4", True, args.frames)
        results[name] = entry
        print(json.dumps({name: entry}, indent=1))
        (args.out / "results.json").write_text(json.dumps(results, indent=1))

    here = [name for name, faces in sets.items() if name not in trained and faces is not None]
    budget = (f"{args.preset}, {args.iters} steps of training for {', '.join(here)}" if here
              else "no set trained here")
    print(f"\n{budget} (runs given with --run: the steps they were trained to), dst = driving_B "
          f"({len(driving)} frames); targets: closer to subject >= 0.9, mouth r >= 0.9, colour ratio <= 1.2\n")
    keys = ["preset", "iterations", "train_minutes", "src_dist_to_subject", "src_closer_to_subject", "face_found",
            "closer_to_subject", "closer_among_found", "dist_to_subject", "dist_to_driver",
            "mouth_correlation", "roll_error_deg", "eye_mid_error_px", "colour_change_ratio", "landmark_jitter_ratio"]
    print("| figure | " + " | ".join(results) + " |\n|---|" + "---|" * len(results))
    for key in keys:
        cells = [str(r.get(key, r["smoothing_on"].get(key, "-"))) for r in results.values()]
        print(f"| {key} | " + " | ".join(cells) + " |")
    for key in ("colour_change_ratio", "landmark_jitter_ratio"):
        cells = [str(r["smoothing_off"][key]) for r in results.values()]
        print(f"| {key} (no smoothing) | " + " | ".join(cells) + " |")
    print(f"\nwrote results.json, strip-*.png and side_by_side-*.mp4 in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
