"""The `avatar` command: serve, chat, export, verify, the GAN's `synth` and the face swap's `swap` subcommands."""
from __future__ import annotations

import os

# On a shared CPU, OpenMP threads that spin while waiting for each other starve everything (measured: 2 threads
# at load 6 trained 5x slower than 1); sleeping waiters avoid that. libgomp reads this once, when torch is first
# imported, so it is set here, before any subcommand imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import sys
from pathlib import Path

from avatar.pipeline import AvatarSettings


def _add_avatar_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--avatar", default="default", help="'default' (built-in) or a driving-clip .npz file")
    p.add_argument("--voice", default=AvatarSettings.voice, help="espeak-ng voice name (default: %(default)s)")
    p.add_argument("--rate", type=int, default=AvatarSettings.rate, help="words per minute (default: %(default)s)")
    p.add_argument("--db", default=None, help="bot database URL (default: embedded SQLite under var/)")


def _responder(db: str | None):
    from bot.responder import BotSettings, ChatResponder

    settings = BotSettings() if db is None else BotSettings(database_url=db)
    return ChatResponder.create(settings)


def cmd_serve(args: argparse.Namespace) -> int:
    from streaming.server import serve
    from streaming.settings import ServiceSettings

    overrides = {"host": args.host, "port": args.port, "avatar": args.avatar, "voice": args.voice, "rate": args.rate}
    if args.db:
        overrides["database_url"] = args.db
    serve(ServiceSettings(**overrides))
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from bot.terminal import run_terminal_chat

    run_terminal_chat(_responder(args.db), sys.stdin, sys.stdout)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from avatar.dialogue import read_dialogue
    from avatar.export import ExportOptions, export_dialogue
    from avatar.pipeline import AvatarEngine

    lines = read_dialogue(args.dialogue)
    engine = AvatarEngine.from_settings(AvatarSettings(avatar=args.avatar, voice=args.voice, rate=args.rate))
    result = export_dialogue(lines, _responder(args.db), engine.performer(), args.output,
                             ExportOptions(captions=args.captions, pause=args.pause))
    print(f"wrote {result.video} ({result.duration:.2f} s, {result.n_frames} frames) and {result.transcript}")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avatar", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="start the web service (page, /kiosk, POST /offer, POST /chat)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    _add_avatar_options(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("chat", help="talk to the bot in the terminal")
    p.add_argument("--db", default=None, help="bot database URL (default: embedded SQLite under var/)")
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

    from avatar.swap.cli import register as register_swap
    from synth.cli import register as register_synth

    register_synth(sub)
    register_swap(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"avatar {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
