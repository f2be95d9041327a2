"""The `avatar` command: serve, chat, export, verify, build, inspect, the GAN's `synth` and the swap's `swap`."""
from __future__ import annotations

import os

# On a shared CPU, OpenMP threads that spin while waiting for each other starve everything (measured: 2 threads
# at load 6 trained 5x slower than 1); sleeping waiters avoid that. libgomp reads this once, when torch is first
# imported, so it is set here, before any subcommand imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import faulthandler
import json
import signal
import sys
from pathlib import Path

from avatar.pipeline import AvatarSettings


def _add_avatar_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--avatar", default=os.environ.get("AVATAR_AVATAR", "default"),
                   help="'default' (built-in), an avatar bundle made by `avatar build` (folder or .avatar file), "
                        "or a driving-clip .npz (default: $AVATAR_AVATAR, else %(default)s)")
    p.add_argument("--voice", default=AvatarSettings.voice, help="espeak-ng voice name (default: %(default)s)")
    p.add_argument("--rate", type=int, default=AvatarSettings.rate, help="words per minute (default: %(default)s)")
    _add_bot_options(p)


def _responder(db: str | None, corpus: list[Path] | None = None):
    from bot.responder import BotSettings, ChatResponder

    options = {} if db is None else {"database_url": db}
    if corpus:
        options["corpus"] = tuple(corpus)
    return ChatResponder.create(BotSettings(**options))


def _add_bot_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=None, help="bot database: a URL (e.g. postgresql+psycopg2://USER@HOST/DB) or an "
                                               "SQLite file's path (default: $AVATAR_DATABASE_URL, else var/bot.sqlite3)")
    p.add_argument("--corpus", type=Path, action="append", default=None, metavar="FILE_OR_DIR",
                   help="the deployment's own corpus: chatterbot-corpus YAML or CSV question,answer files, or "
                        "folders of them; repeatable (default: $AVATAR_CORPUS)")


def cmd_serve(args: argparse.Namespace) -> int:
    from avatar.pipeline import check_avatar
    from streaming.server import serve
    from streaming.settings import ServiceSettings

    check_avatar(args.avatar)                      # a bad avatar is refused before the service starts

    overrides = {"host": args.host, "port": args.port, "avatar": args.avatar, "voice": args.voice, "rate": args.rate}
    if args.db:
        overrides["database_url"] = args.db
    if args.corpus:                                # the bot reads its corpus from AVATAR_CORPUS
        os.environ["AVATAR_CORPUS"] = json.dumps([str(path) for path in args.corpus])
    serve(ServiceSettings(**overrides))
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from bot.terminal import run_terminal_chat

    run_terminal_chat(_responder(args.db, args.corpus), sys.stdin, sys.stdout)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from avatar.dialogue import read_dialogue
    from avatar.export import ExportOptions, export_dialogue
    from avatar.pipeline import AvatarEngine
    from avatar.provenance import ContentInfo

    lines = read_dialogue(args.dialogue)
    engine = AvatarEngine.from_settings(AvatarSettings(avatar=args.avatar, voice=args.voice, rate=args.rate))
    provenance = ContentInfo(title=f"AI-generated dialogue with {engine.name}", avatar_name=engine.name,
                             consent=engine.consent)
    result = export_dialogue(lines, _responder(args.db, args.corpus), engine.performer(), args.output,
                             ExportOptions(captions=args.captions, pause=args.pause, provenance=provenance))
    print(f"wrote {result.video} ({result.duration:.2f} s, {result.n_frames} frames) and {result.transcript}, "
          f"signed with C2PA manifests (check with: avatar verify {result.video})")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from avatar.build import BuildOptions, main_build

    return main_build(BuildOptions(
        subject=tuple(args.subject), driving=args.driving, name=args.name, consent=args.consent, out=args.out,
        preset=args.preset, device=args.device, subject_name=args.subject_name,
        driving_consent=args.driving_consent, driving_name=args.driving_name, faces=args.faces, gan=args.gan,
        swap=args.swap, work=args.work, driving_frames=args.driving_frames, gan_kimg=args.gan_kimg,
        swap_iters=args.swap_iters, progress=not args.quiet))


def cmd_inspect(args: argparse.Namespace) -> int:
    from avatar.bundle import describe, open_bundle

    print(describe(open_bundle(args.avatar)))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from avatar.provenance import verify_file

    result = verify_file(args.file, ca=args.ca)
    print(f"{result.path}: {result.state}" + (f" (manifest in {result.manifest.name})" if result.manifest else ""))
    if result.state == "unsigned":
        print("not signed: " + "; ".join(result.problems))
        return 1
    print(f"signed by: {result.signer or 'unknown'}")
    if result.intact:
        print("intact: yes, unchanged since it was signed")
    else:
        print("intact: NO, tampered: the file was changed after signing, or its manifest is broken")
    print("signer: trusted" if result.trusted else "signer: untrusted signer (its CA is not a trust anchor; see --ca)")
    if result.digital_source_type:
        print(f"source: {result.digital_source_type.rsplit('/', 1)[-1]}")
    print(f"avatar: {result.avatar_name or 'not stated'}")
    print("consent: " + ("; ".join(result.consent) if result.consent else "none recorded"))
    if not result.intact:
        for problem in result.problems:
            print(f"  problem: {problem}")
    return 0 if result.intact else 1


def _add_build_parser(sub) -> None:
    """`avatar build`'s options."""
    p = sub.add_parser("build", help="make a custom avatar bundle from a consenting subject's footage, in one go")
    p.add_argument("--subject", type=Path, nargs="+", required=True, metavar="SUBJECT_VIDEO",
                   help="video(s) of the subject alone, the face whose avatar this is")
    p.add_argument("--driving", type=Path, required=True, metavar="DRIVING_VIDEO",
                   help="talking-head clip whose motion the avatar takes (30 s or more of natural speech)")
    p.add_argument("--name", required=True, help="the avatar's name, shown on the page and in exports")
    p.add_argument("--consent", type=Path, default=None, metavar="CONSENT_FILE",
                   help="the subject's consent statement (text, PDF or recording); required")
    p.add_argument("--subject-name", default=None, help="whose face it is (default: --name)")
    p.add_argument("--driving-consent", type=Path, default=None, metavar="FILE",
                   help="the driving person's consent; required unless the driving clip shows the subject")
    p.add_argument("--driving-name", default=None, help="the driving person's name")
    p.add_argument("--out", type=Path, required=True, metavar="AVATAR", help="bundle folder, or a .avatar file")
    p.add_argument("--preset", default="cpu", help="smoke, cpu or gpu (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--faces", type=Path, default=None,
                   help="use these faces of the subject (a FACES folder or an `avatar synth prepare` DATASET) "
                        "instead of training a GAN")
    p.add_argument("--gan", type=Path, default=None, metavar="RUN", help="sample this trained GAN run")
    p.add_argument("--swap", type=Path, default=None, metavar="RUN", help="use this trained swap run")
    p.add_argument("--work", type=Path, default=None, help="work folder (default: var/build/NAME)")
    p.add_argument("--driving-frames", type=int, default=None, metavar="N", help="only the first N driving frames")
    p.add_argument("--gan-kimg", type=float, default=None, help="GAN training length (default: the preset's)")
    p.add_argument("--swap-iters", type=int, default=None, help="swap training length (default: the preset's)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_build)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avatar", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="start the web service (page, /kiosk, POST /offer, POST /chat)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    _add_avatar_options(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("chat", help="talk to the bot in the terminal")
    _add_bot_options(p)
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("export", help="render a dialogue file to an mp4 with a WebVTT transcript")
    p.add_argument("--dialogue", type=Path, required=True, help="text file, one human line per line")
    p.add_argument("-o", "--output", type=Path, default=Path("dialogue.mp4"))
    p.add_argument("--captions", action="store_true", help="burn the transcript into the video")
    p.add_argument("--pause", type=float, default=0.8, help="seconds of listening before each answer")
    _add_avatar_options(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("verify", help="check a file's C2PA manifest: who signed it, is it intact, which avatar")
    p.add_argument("file", type=Path, help="an exported .mp4, .png or .vtt (read with its .vtt.c2pa sidecar)")
    p.add_argument("--ca", type=Path, default=None,
                   help="CA certificate (PEM) to trust (default: AVATAR_C2PA_CA, else the local CA under var/c2pa)")
    p.set_defaults(func=cmd_verify)

    _add_build_parser(sub)

    p = sub.add_parser("inspect", help="what an avatar bundle is made of, whose consent it records; checks its hashes")
    p.add_argument("avatar", type=Path, metavar="AVATAR")
    p.set_defaults(func=cmd_inspect)

    from avatar.swap.cli import register as register_swap
    from synth.cli import register as register_synth

    register_synth(sub)
    register_swap(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:  # `kill -USR1 PID` prints every thread's stack: what a long run is doing
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    except (AttributeError, ValueError, OSError):  # no SIGUSR1 here, or stderr is no file (main() in a test)
        pass
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:        # bad input, or a file that cannot be read or written
        print(f"avatar {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
