"""`avatar swap train`, `apply` and `bake`: the face-swap model's commands (registered by avatar.cli)."""
from __future__ import annotations

import argparse
from pathlib import Path

# Choices are checked where they are defined (presets, merge options), so that building the parser imports
# neither torch nor dlib: every `avatar` command builds it.


def cmd_train(args: argparse.Namespace) -> int:
    from avatar.swap.train import SwapTrainOptions, run_swap_training

    path = run_swap_training(SwapTrainOptions(src=args.src, dst=args.dst, out=args.out, preset=args.preset,
                                              device=args.device, resume=args.resume, iters=args.iters,
                                              minutes=args.minutes, dst_frames=args.dst_frames))
    print(f"checkpoint {path}; previews in {args.out / 'grids'}, loss plot {args.out / 'losses.png'}")
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    from avatar.runs import check_device
    from avatar.swap.data import SCAN_FILE
    from avatar.swap.merge import MergeOptions
    from avatar.swap.predictor import SwapFaceModel
    from avatar.swap.video import swap_clip, write_swapped_video

    device = check_device(args.device)
    predictor = SwapFaceModel.from_run(args.run, device)
    options = MergeOptions(colour=args.colour, blend=args.blend)
    swapped = swap_clip(args.video, predictor, args.run / "scans" / f"{args.video.stem}.npz", args.frames, options,
                        reuse=(args.run / SCAN_FILE,))
    n = write_swapped_video(args.video, swapped, args.output, args.side_by_side, args.frames)
    counts = swapped.scan.counts()
    print(f"wrote {args.output} ({n} frames; {len(swapped.indices)} swapped, "
          f"{n - len(swapped.indices)} without exactly one face held from a neighbour: "
          f"{counts['no_face']} no face, {counts['several_faces']} several)")
    return 0


def cmd_bake(args: argparse.Namespace) -> int:
    from avatar.runs import check_device
    from avatar.swap.data import SCAN_FILE
    from avatar.swap.merge import MergeOptions
    from avatar.swap.predictor import SwapFaceModel
    from avatar.swap.video import bake_clip

    if args.output.suffix != ".npz":
        raise ValueError(f"output must be an .npz driving clip, got {args.output.name!r}")
    predictor = SwapFaceModel.from_run(args.run, check_device(args.device))
    clip = bake_clip(args.video, predictor, args.run / "scans" / f"{args.video.stem}.npz", args.frames,
                     MergeOptions(colour=args.colour, blend=args.blend), reuse=(args.run / SCAN_FILE,))
    clip.save(args.output)
    print(f"wrote {args.output} ({len(clip)} frames with the subject's face); "
          f"serve it with: avatar serve --avatar {args.output}")
    return 0


def _add_merge_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", type=Path, help="swap run folder")
    p.add_argument("--video", type=Path, required=True, help="driving video")
    p.add_argument("--frames", type=int, default=None, help="only the first N frames")
    p.add_argument("--colour", default="rct", help="colour transfer: rct, hist or none (default: %(default)s)")
    p.add_argument("--blend", default="alpha", help="alpha or seamless (default: %(default)s)")
    p.add_argument("--device", default="cpu")


def register(subparsers: argparse._SubParsersAction) -> None:
    swap = subparsers.add_parser("swap", help="the face-swap model: train on the subject's faces, apply to a video")
    sub = swap.add_subparsers(dest="swap_command", required=True)

    p = sub.add_parser("train", help="train a DF face-swap model (src: subject faces, dst: driving video)")
    p.add_argument("--src", type=Path, required=True, help="FACES folder (avatar synth sample output)")
    p.add_argument("--dst", type=Path, required=True, help="driving video")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--preset", default="cpu64", help="smoke, cpu64, cpu64-liae, cpu64-mouth, cpu128, gpu128 or gpu256 (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    p.add_argument("--iters", type=int, default=None, help="total iterations (default: the preset's)")
    p.add_argument("--minutes", type=float, default=None, help="stop (with a checkpoint) after this long")
    p.add_argument("--dst-frames", type=int, default=None, help="use only the first N frames of the video")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("apply", help="the driving video with the subject's face, as an mp4 to look at")
    _add_merge_options(p)
    p.add_argument("-o", "--output", type=Path, required=True, help=".mp4 file")
    p.add_argument("--side-by-side", action="store_true", help="original on the left, swapped on the right")
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser("bake", help="the driving clip with the subject's face, rendered once, for `serve --avatar`")
    _add_merge_options(p)
    p.add_argument("-o", "--output", type=Path, required=True, help=".npz driving clip")
    p.set_defaults(func=cmd_bake)
