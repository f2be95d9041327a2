"""Benchmark: quality of the face swap on the shared footage, and the paper's comparison of src face sets.

    .venv/bin/python bench/swap_quality.py [--iters 3000] [--n 1000] [--every 1] [--gan-faces FACES]
                                           [--sets gan,random,monotone] [--frames N] [--preset cpu64]
                                           [--out var/bench/swap_quality]

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
frame, cached in var/bench/).
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
import PIL.Image
import torch

from avatar.detect import find_faces
from avatar.driving import head_pose, mouth_descriptors
from avatar.swap.colour import to_lab
from avatar.swap.data import SCAN_FILE, read_frames
from avatar.swap.merge import MergeOptions
from avatar.swap.predictor import SwapFaceModel, load_swap_model
from avatar.swap.train import SwapTrainOptions, run_swap_training
from avatar.swap.video import held_frames, swap_clip, write_swapped_video

REPO = Path(__file__).resolve().parents[1]
VIDEOS = REPO.parent / "shared" / "data" / "videos"
SUBJECT = VIDEOS / "subject_A_man_indoor_60s.mp4"
DRIVING = VIDEOS / "driving_B_man_outdoor_35s.mp4"


def mean_embedding(video: Path, every: int, limit: int | None = None) -> np.ndarray:
    embeddings = []
    for i, frame in enumerate(read_frames(video, limit)):
        if i % every == 0:
            faces = find_faces(frame, upsample=0)
            if len(faces) == 1:
                embeddings.append(faces[0].embedding)
    return np.mean(embeddings, axis=0)


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


def face_colour(frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Mean Lab colour inside the landmark hull (jaw and brows)."""
    mask = np.zeros(frame.shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(landmarks[:27]).astype(np.int32)), 1)
    return to_lab(frame)[mask > 0].mean(0)


def colour_change(frames: list[np.ndarray], landmarks: np.ndarray) -> float:
    colours = np.stack([face_colour(f, lm) for f, lm in zip(frames, landmarks)])
    return float(np.linalg.norm(np.diff(colours, axis=0), axis=1).mean())


def jitter(landmarks: np.ndarray) -> float:
    ok = np.isfinite(landmarks).all(axis=(1, 2))
    trio = ok[:-2] & ok[1:-1] & ok[2:]
    second = landmarks[2:] - 2 * landmarks[1:-1] + landmarks[:-2]
    return float(np.linalg.norm(second[trio], axis=-1).mean())


def measure(frames: list[np.ndarray], driving: list[np.ndarray], driving_lm: np.ndarray, usable: np.ndarray,
            subject: np.ndarray, driver: np.ndarray) -> dict:
    """The figures for output frames against the driving frames (usable frames only)."""
    to_subject, to_driver, out_lm = [], [], np.full_like(driving_lm, np.nan)
    for i in np.flatnonzero(usable):
        faces = find_faces(frames[i], upsample=0)
        if len(faces) != 1:
            continue
        out_lm[i] = faces[0].landmarks
        to_subject.append(np.linalg.norm(faces[0].embedding - subject))
        to_driver.append(np.linalg.norm(faces[0].embedding - driver))
    found = np.isfinite(out_lm).all(axis=(1, 2))
    both = found & usable
    ts, td = np.array(to_subject), np.array(to_driver)
    closer = int((ts < td).sum())
    opening_out, opening_drv = mouth_descriptors(out_lm[both])[:, 0], mouth_descriptors(driving_lm[both])[:, 0]
    pose_out, pose_drv = head_pose(out_lm[both]), head_pose(driving_lm[both])
    idx = np.flatnonzero(usable)
    return {
        "frames": int(usable.sum()), "face_found": round(float(both.sum() / max(usable.sum(), 1)), 4),
        "dist_to_subject": round(float(ts.mean()), 4), "dist_to_driver": round(float(td.mean()), 4),
        "closer_to_subject": round(closer / max(int(usable.sum()), 1), 4),
        "closer_among_found": round(closer / max(len(ts), 1), 4),
        "mouth_correlation": round(float(np.corrcoef(opening_out, opening_drv)[0, 1]), 4),
        "roll_error_deg": round(float(np.abs(pose_out[:, 2] - pose_drv[:, 2]).mean()), 3),
        "eye_mid_error_px": round(float(np.linalg.norm(pose_out[:, :2] - pose_drv[:, :2], axis=1).mean()), 3),
        "colour_change_ratio": round(colour_change([frames[i] for i in idx], driving_lm[idx])
                                     / colour_change([driving[i] for i in idx], driving_lm[idx]), 4),
        "landmark_jitter_ratio": round(jitter(out_lm) / jitter(np.where(usable[:, None, None], driving_lm, np.nan)), 4),
    }


def strip(driving: list[np.ndarray], swapped: list[np.ndarray], path: Path, count: int = 8) -> None:
    picks = np.linspace(0, len(driving) - 1, count).round().astype(int)
    small = lambda f: cv2.resize(f, (180, 180 * f.shape[0] // f.shape[1]), interpolation=cv2.INTER_AREA)  # noqa
    rows = [np.concatenate([small(frames[i]) for i in picks], axis=1) for frames in (driving, swapped)]
    PIL.Image.fromarray(np.concatenate(rows, axis=0)).save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=3000, help="training steps per src set (default 3000)")
    parser.add_argument("--n", type=int, default=1000, help="faces per real src set (default 1000)")
    parser.add_argument("--every", type=int, default=1, help="real frames: every K-th frame of subject_A")
    parser.add_argument("--gan-faces", type=Path, default=None, help="FACES folder from `avatar synth sample`")
    parser.add_argument("--sets", default="gan,random,monotone")
    parser.add_argument("--frames", type=int, default=None, help="only the first N frames of driving_B")
    parser.add_argument("--preset", default="cpu64")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "var" / "bench" / "swap_quality")
    args = parser.parse_args(argv)
    if not (SUBJECT.exists() and DRIVING.exists()):
        print(f"skipped: {SUBJECT} or {DRIVING} not available")
        return 0
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    wanted = args.sets.split(",")
    sets = {name: path for name, path in real_face_sets(args.n, args.every, args.out).items() if name in wanted}
    if "gan" in wanted:
        if args.gan_faces is None:
            print("gan: no --gan-faces given (train a GAN and run `avatar synth sample RUN --n 1000`); skipped")
        else:
            sets = {"gan": args.gan_faces, **sets}
    print("reference embeddings: subject_A (every 10th frame), driving_B (every 10th frame)")
    subject, driver = mean_embedding(SUBJECT, 10), mean_embedding(DRIVING, 10)
    driving = list(read_frames(DRIVING, args.frames))
    results = {}
    for name, faces in sets.items():
        run = args.out / f"run-{name}"
        shutil.rmtree(run, ignore_errors=True)
        t0 = time.perf_counter()
        run_swap_training(SwapTrainOptions(faces, DRIVING, run, preset=args.preset, iters=args.iters))
        predictor = SwapFaceModel.from_run(run)
        iters = load_swap_model(run)[2]
        entry = {"faces": str(faces), "iterations": iters, "train_minutes": round((time.perf_counter() - t0) / 60, 1)}
        for smoothing in ("on", "off"):
            options = MergeOptions() if smoothing == "on" else MergeOptions(landmark_sigma=0, colour_sigma=0)
            swapped = swap_clip(DRIVING, predictor, run / "scans" / "driving_B.npz", args.frames, options,
                                reuse=(run / SCAN_FILE,))
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

    print(f"\n{args.preset}, {args.iters} steps of training per set, dst = driving_B "
          f"({len(driving)} frames); targets: closer to subject >= 0.9, mouth r >= 0.9, colour ratio <= 1.2\n")
    keys = ["iterations", "train_minutes", "face_found", "closer_to_subject", "closer_among_found",
            "dist_to_subject", "dist_to_driver",
            "mouth_correlation", "roll_error_deg", "eye_mid_error_px", "colour_change_ratio", "landmark_jitter_ratio"]
    print("| figure | " + " | ".join(results) + " |\n|---|" + "---|" * len(results))
    for key in keys:
        cells = [str(r[key] if key in r else r["smoothing_on"][key]) for r in results.values()]
        print(f"| {key} | " + " | ".join(cells) + " |")
    for key in ("colour_change_ratio", "landmark_jitter_ratio"):
        cells = [str(r["smoothing_off"][key]) for r in results.values()]
        print(f"| {key} (no smoothing) | " + " | ".join(cells) + " |")
    print(f"\nwrote results.json, strip-*.png and side_by_side-*.mp4 in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
