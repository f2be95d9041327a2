"""`avatar synth prepare|train|sample|metrics`: a thin CLI over synth's library modules.

Each handler turns the parsed arguments into typed options, calls one library function and prints a summary;
it returns the exit status. Bad input raises ValueError subclasses, which the `avatar` CLI prints as errors.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_prepare(args: argparse.Namespace) -> int:
    from synth.prepare import PrepareOptions, format_report, prepare

    options = PrepareOptions(size=args.size, every=args.every, max_distance=args.max_distance, upsample=args.upsample)
    report = prepare(args.videos, args.out, options, show_progress=not args.quiet)
    print(format_report(report))
    return 1 if report.errors else 0


def cmd_train(args: argparse.Namespace) -> int:
    from avatar.runs import list_checkpoints
    from synth.train import GanTrainOptions, run_training

    try:
        run = run_training(GanTrainOptions(args.dataset, args.preset, args.out, device=args.device,
                                           resume=args.resume, kimg=args.kimg, minutes=args.minutes))
    except KeyboardInterrupt:
        saved = list_checkpoints(Path(args.out))
        where = f"the last checkpoint is {saved[-1]}" if saved else "no checkpoint was written yet"
        print(f"\ninterrupted; {where}. Continue with the same command plus --resume.", file=sys.stderr)
        return 130
    print(f"run folder: {run}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    import PIL.Image

    from avatar.driving import format_mouth_range
    from synth.sample import SampleOptions, image_grid, sample_run

    options = SampleOptions(n=args.n, oversample=args.oversample, psi=args.psi, seed=args.seed, nearest=args.nearest)
    selection = sample_run(args.run, args.out, options, real=args.real, device=args.device, progress=not args.quiet)
    counts = selection.counts
    print(f"{counts['kept']} faces written to {args.out} (of {counts['candidates']} candidates: "
          f"{counts['no_face']} no face, {counts['not_matching']} not the subject, {counts['matching']} matching, "
          f"chosen from the {counts['nearest']} nearest the subject)")
    if selection.images:
        print(f"the faces kept: {format_mouth_range(selection.mouth())}")
    if args.grid and selection.images:
        PIL.Image.fromarray(image_grid(selection.images[:64])).save(args.grid)
        print(f"grid of the first {min(64, len(selection.images))} faces: {args.grid}")
    if counts["kept"] < args.n:
        print(f"warning: only {counts['kept']} of the {args.n} faces asked for passed the checks", file=sys.stderr)
        return 1
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from avatar.files import write_json_atomic
    from synth.metrics import MetricsError, MetricsOptions, evaluate_paths, load_image_set, to_markdown
    from synth.metrics.calibrate import calibrate, table1_markdown
    from synth.metrics.recognition import scan_set

    if args.faces is None and not args.calibrate:
        raise MetricsError("give a FACES folder, or --calibrate with --real DATASET")
    if args.calibrate:
        if args.real is None:
            raise MetricsError("--calibrate needs --real DATASET")
        real = load_image_set(args.real).subset(args.real_limit)
        print("Table 1 (calibration on the real set)\n")
        print(table1_markdown(*calibrate(scan_set(real, not args.quiet), args.calibrate_count)) + "\n")
    if args.faces is None:
        return 0
    options = MetricsOptions(metrics=tuple(args.metrics.split(",")), is_weights=args.is_weights,
                             device=args.device, real_limit=args.real_limit, progress=not args.quiet)
    table = evaluate_paths(args.faces, args.real, options)
    print("Table 2\n")
    print(to_markdown(table))
    if args.json:
        write_json_atomic(args.json, table.to_json())
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `synth` command and its subcommands to a parent CLI."""
    synth = subparsers.add_parser("synth", help="GAN faces: prepare a dataset, train, sample, evaluate")
    sub = synth.add_subparsers(dest="synth_command", required=True)

    p = sub.add_parser("prepare", help="aligned faces of one subject from videos -> DATASET")
    p.add_argument("videos", type=Path, nargs="+", metavar="VIDEO")
    p.add_argument("--out", type=Path, required=True, metavar="DATASET")
    p.add_argument("--size", type=int, default=64, choices=(64, 128, 256))
    p.add_argument("--every", type=int, default=1, metavar="K", help="use every K-th frame (default 1)")
    p.add_argument("--max-distance", type=float, default=0.5,
                   help="embedding distance from the subject's median beyond which a face is someone else (0.5)")
    p.add_argument("--upsample", type=int, default=None, help="HOG upsampling (default: 1 below 720 px, else 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="train StyleGAN2 on DATASET -> RUN")
    p.add_argument("dataset", type=Path, metavar="DATASET")
    p.add_argument("--preset", default="cpu64", help="smoke, cpu64 or paper256")
    p.add_argument("--out", type=Path, required=True, metavar="RUN")
    p.add_argument("--device", default="cpu")
    p.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    p.add_argument("--kimg", type=float, default=None, help="training length in kimg (default: the preset's)")
    p.add_argument("--minutes", type=float, default=None, help="also stop after this much wall-clock time")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="N varied faces of the subject from a trained RUN -> FACES")
    p.add_argument("run", type=Path, metavar="RUN")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--out", type=Path, required=True, metavar="FACES")
    p.add_argument("--psi", type=float, default=1.0, help="truncation psi (default 1.0: no truncation)")
    p.add_argument("--oversample", type=float, default=4.0, help="candidates per face kept (default 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nearest", type=float, default=1.0, metavar="SHARE",
                   help="choose for variety among this share of the matching faces, those nearest the subject "
                        "(default 1: all of them)")
    p.add_argument("--real", type=Path, default=None, metavar="DATASET",
                   help="the subject's dataset (default: the one the run was trained on)")
    p.add_argument("--grid", type=Path, default=None, help="also save a PNG grid of the first 64 faces here")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("metrics", help="the paper's Table 2 for FACES (and Table 1 with --calibrate)")
    p.add_argument("faces", type=Path, nargs="?", default=None, metavar="FACES")
    p.add_argument("--real", type=Path, default=None, metavar="DATASET")
    p.add_argument("--json", type=Path, default=None, metavar="OUT.json")
    p.add_argument("--metrics", default="is,fid,openface,fr", help="subset of is,fid,openface,fr")
    p.add_argument("--is-weights", type=Path, default=None,
                   help="TorchScript ImageNet classifier for the Inception Score ([N,3,299,299] in [-1,1] -> logits)")
    p.add_argument("--real-limit", type=int, default=None, help="use at most this many real images")
    p.add_argument("--calibrate", action="store_true", help="print Table 1: monotone vs varied real subsets")
    p.add_argument("--calibrate-count", type=int, default=100, help="faces per calibration subset")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_metrics)


def main(argv: list[str] | None = None) -> int:
    """Run the synth subcommands on their own: `python -m synth.cli prepare ...`."""
    parser = argparse.ArgumentParser(prog="synth")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(["synth", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"synth {args.synth_command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
