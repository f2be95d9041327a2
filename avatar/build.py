"""`avatar build`: a consenting subject's footage and a driving clip in, an avatar bundle out, in one command.

The paper's chain, each stage in its own folder under the work directory with a `done.json` once finished:

    check    consent files, the subject video(s) (one person), the driving clip (usable for the motion planner)
    prepare  `synth prepare`: aligned faces of the subject                         (skipped with --faces or --gan)
    gan      StyleGAN2 training on them                                             (skipped with --faces or --gan)
    sample   `synth sample`: the varied set of synthetic faces that pass the identity filter   (skipped with --faces)
    swap     the DF face-swap model: synthetic faces -> the driving clip's face     (skipped with --swap)
    bake     every usable driving frame with the subject's face
    quality  the swap's figures on a window of the baked frames, and a strip to look at
    bundle   manifest (consent, sources, settings, analysis, quality) + frames + previews -> --out

Running the same command again continues: finished stages are kept, training stages resume from their last
checkpoint. The work folder remembers its inputs and refuses different ones.
"""
from __future__ import annotations

import datetime
import json
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from avatar.build_check import (BuildError, check_driving, check_subject, consent_record, driving_summary,
                                mouth_coverage, source_record)
from avatar.build_presets import BuildPreset, get_preset, typical_minutes
from avatar.driving import format_mouth_range
from avatar.files import file_sha256, write_json_atomic

DONE_FILE = "done.json"
# Measured 2026-12-03 (README): the cpu64 GAN trained on from 120 to 200 kimg kept faces with even narrower mouths.
GAN_MOUTH_ADVICE = ("Training the GAN longer need not help (at 64 px its mouths narrowed further from 120 to 200 "
                    "kimg); real aligned faces of the subject (--faces with an `avatar synth prepare` DATASET) carry "
                    "the mouth's whole range.")
INPUTS_FILE = "build.json"


@dataclass(frozen=True)
class BuildOptions:
    """What `avatar build` was asked to do."""

    subject: tuple[Path, ...]          # video(s) of the consenting subject
    driving: Path                      # the driving clip: whose motion the avatar takes
    name: str                          # the avatar's name
    consent: Path | None               # the subject's consent statement (text, PDF or recording)
    out: Path                          # the bundle: a folder, or a file ending in .avatar
    preset: str = "cpu"
    device: str = "cpu"
    subject_name: str | None = None    # whose face it is (default: the avatar's name)
    driving_consent: Path | None = None  # the driving person's consent, unless they are the subject
    driving_name: str | None = None
    faces: Path | None = None          # a FACES folder (synth sample) or a prepared DATASET: skip prepare/gan/sample
    gan: Path | None = None            # a trained GAN run: skip prepare/gan
    swap: Path | None = None           # a trained swap run: skip swap
    work: Path | None = None           # default var/build/<name>
    driving_frames: int | None = None  # only the first N frames of the driving clip
    gan_kimg: float | None = None
    swap_iters: int | None = None
    progress: bool = True


def slug(name: str) -> str:
    """A file-name-safe form of an avatar's name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "avatar"


# --- inputs ----------------------------------------------------------------------------------------------------


def _check_inputs(options: BuildOptions) -> None:
    if not options.name.strip():
        raise BuildError("--name must not be empty")
    if not options.subject:
        raise BuildError("--subject: give at least one video of the subject")
    for path in (*options.subject, options.driving):
        if not Path(path).is_file():
            raise BuildError(f"no video at {path}")
    for option, path in (("--faces", options.faces), ("--gan", options.gan), ("--swap", options.swap)):
        if path is not None and not Path(path).is_dir():
            raise BuildError(f"{option}: no folder at {path}")
    if options.faces is not None and options.gan is not None:
        raise BuildError("give --faces or --gan, not both (--faces skips the GAN altogether)")
    if options.driving_frames is not None and options.driving_frames < 1:
        raise BuildError("--driving-frames must be positive")


# --- the build --------------------------------------------------------------------------------------------------


class _Stages:
    """Runs named stages in order, each once: a stage with a done.json is kept and its result read back."""

    def __init__(self, work: Path, names: list[str], preset: BuildPreset, device: str, say: Callable[[str], None]):
        self.work, self.names, self.say = work, names, say
        self.typical, self.typical_on = typical_minutes(preset, device)
        self.started = time.monotonic()

    def run(self, name: str, body: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
        k, folder = self.names.index(name) + 1, self.work / name
        done = folder / DONE_FILE
        if done.is_file():
            self.say(f"[{k}/{len(self.names)}] {name}: finished in an earlier run, kept")
            return json.loads(done.read_text())
        left = sum(self.typical.get(s, 0) for s in self.names[k - 1:])
        self.say(f"[{k}/{len(self.names)}] {name} (typically {self.typical.get(name, 0):g} min; about "
                 f"{left:g} min left in all on {self.typical_on}; {self._elapsed()} so far)")
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        result = body(folder)
        result["seconds"] = round(time.monotonic() - t0, 1)
        write_json_atomic(done, result)
        return result

    def _elapsed(self) -> str:
        return f"{(time.monotonic() - self.started) / 60:.1f} min"


def stage_names(options: BuildOptions) -> list[str]:
    names = ["check"]
    if options.faces is None:
        names += ([] if options.gan is not None else ["prepare", "gan"]) + ["sample"]
    if options.swap is None:
        names.append("swap")
    return names + ["bake", "quality", "bundle"]


def _inputs(options: BuildOptions) -> dict[str, Any]:
    """What the work folder's stages depend on: a rerun with other inputs is refused."""
    return {"name": options.name, "preset": options.preset,
            "subject": [file_sha256(p) for p in options.subject], "driving": file_sha256(options.driving),
            "driving_frames": options.driving_frames,
            "faces": str(Path(options.faces).resolve()) if options.faces else None,
            "gan": str(Path(options.gan).resolve()) if options.gan else None,
            "swap": str(Path(options.swap).resolve()) if options.swap else None,
            "gan_kimg": options.gan_kimg, "swap_iters": options.swap_iters}


def _claim_work(work: Path, inputs: dict[str, Any]) -> None:
    path = work / INPUTS_FILE
    if path.is_file():
        before = json.loads(path.read_text())
        changed = [key for key in inputs if before.get(key) != inputs[key]]
        if changed:
            raise BuildError(f"work folder {work} belongs to a build with other {', '.join(changed)}; "
                             "pass another --work, or delete it to start over")
        return
    work.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, inputs)


def build(options: BuildOptions, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or continue) the build; returns the bundle's manifest."""
    from avatar.runs import check_device

    preset = get_preset(options.preset)
    _check_inputs(options)
    subject_name = options.subject_name or options.name
    consent = [consent_record(options.consent, "subject", subject_name, "--consent")]
    if options.driving_consent is not None:
        consent.append(consent_record(options.driving_consent, "driving person",
                                      options.driving_name or "the driving person", "--driving-consent"))
    out = Path(options.out)
    work = Path(options.work) if options.work else Path("var") / "build" / slug(options.name)
    names = stage_names(options)
    if out.exists() and not (work / "bundle" / DONE_FILE).is_file():
        raise BuildError(f"--out {out} already exists; choose another, or delete it")
    if out.exists():
        from avatar.bundle import is_bundle

        if not is_bundle(out):
            raise BuildError(f"--out {out} exists and is not an avatar bundle")
    device = check_device(options.device)
    _claim_work(work, _inputs(options))
    say(f"building avatar {options.name!r} in {len(names)} stages: {', '.join(names)}; work folder {work}")
    stages = _Stages(work, names, preset, device, say)

    def check(folder: Path) -> dict[str, Any]:
        subject, subject_report = check_subject(tuple(options.subject))
        driving = check_driving(options.driving, folder / "driving_scan.npz", options.driving_frames, subject,
                                options.progress)
        return {"subject_embedding": subject.tolist(), "subject_videos": subject_report, **driving}

    checked = stages.run("check", check)
    say(f"driving clip: {driving_summary(checked['analysis'])}")
    for warning in checked["warnings"]:
        say(f"warning: driving clip: {warning}")
    if not checked["driving_is_subject"] and options.driving_consent is None:
        raise BuildError(f"the driving clip shows someone other than the subject (face distance "
                         f"{checked['driver_to_subject']:.2f}); their consent is needed as well: "
                         "--driving-consent FILE [--driving-name NAME]")
    faces = _faces(options, preset, device, stages, work, checked["analysis"])
    run = _swap(options, preset, device, stages, work, faces)
    baked = stages.run("bake", lambda folder: _bake(options, run, device, work, folder))
    quality = stages.run("quality", lambda folder: _quality(options, work, checked, folder))
    info = {"consent": consent, "checked": checked, "quality": quality, "faces": str(faces), "swap_run": str(run),
            "device": device, "preset": preset, "baked": baked}
    stages.run("bundle", lambda folder: _bundle(options, work, info))
    from avatar.bundle import open_bundle

    return open_bundle(out).manifest


def _faces(options: BuildOptions, preset: BuildPreset, device: str, stages: _Stages, work: Path,
           driving: dict[str, Any]) -> Path:
    """The subject's faces the swap learns: given, or prepared -> GAN -> sampled (and their mouths measured
    against the driving clip's analysis)."""
    from synth.sample import SampleOptions, export_real_faces, sample_run

    if options.faces is not None:
        given = Path(options.faces)
        if (given / "metadata.json").is_file() or not (given / "dataset.json").is_file():
            return given                                   # a FACES folder (or plain images: the swap checks them)
        converted = work / "faces"                          # a prepared DATASET: its images as a FACES folder
        if not (converted / "metadata.json").is_file():
            from synth.dataset import load_metadata

            shutil.rmtree(converted, ignore_errors=True)
            export_real_faces(given, np.arange(len(load_metadata(given))), converted)
        return converted
    gan = Path(options.gan) if options.gan is not None else None
    dataset = None
    if gan is None:
        dataset = work / "prepare" / "dataset"
        stages.run("prepare", lambda folder: _prepare(options, preset, dataset))
        gan = work / "gan" / "run"
        stages.run("gan", lambda folder: _train_gan(options, preset, device, dataset, gan))
    out = work / "sample" / "faces"

    def sample(folder: Path) -> dict[str, Any]:
        shutil.rmtree(out, ignore_errors=True)             # an interrupted sampling starts over (minutes at most)
        selection = sample_run(gan, out, SampleOptions(n=preset.faces), real=dataset, device=device,
                               progress=options.progress)
        counts = selection.counts
        if counts["kept"] < max(16, preset.faces // 2):
            raise BuildError(
                f"the GAN in {gan} is not good enough yet: of {counts['candidates']} generated faces only "
                f"{counts['matching']} pass the identity filter as the subject ({counts['no_face']} are not faces), "
                f"{counts['kept']} kept of the {preset.faces} needed. Train it longer (a bigger --preset, or "
                f"`avatar synth train DATASET --resume --out {gan} --kimg N` and then --gan {gan}), or pass "
                "--faces with real aligned faces of the subject (an `avatar synth prepare` DATASET)")
        return {"faces": str(out), **counts, "mouth": selection.mouth()}

    sampled = stages.run("sample", sample)
    if "mouth" in sampled:
        stages.say(f"the {sampled['kept']} sampled faces: {format_mouth_range(sampled['mouth'])}")
    warnings = mouth_coverage(sampled["mouth"], driving) if "mouth" in sampled else []
    if warnings:
        stages.say(f"warning: the GAN's faces: {'; '.join(warnings)}. The swap learns the subject's mouth from "
                   f"these faces only, so the avatar's mouth will follow the driver's less closely (the quality "
                   f"stage measures how closely). {GAN_MOUTH_ADVICE}")
    return out


def _prepare(options: BuildOptions, preset: BuildPreset, dataset: Path) -> dict[str, Any]:
    from synth.prepare import PrepareOptions, format_report, prepare

    report = prepare(list(options.subject), dataset, PrepareOptions(size=preset.face_size, every=preset.every),
                     show_progress=options.progress)
    if report.errors:
        raise BuildError("preparing the subject's faces failed: " + "; ".join(report.errors))
    print(format_report(report))
    return {"dataset": str(dataset), "faces": report.info.count, **report.counts}


def _train_gan(options: BuildOptions, preset: BuildPreset, device: str, dataset: Path, run: Path) -> dict[str, Any]:
    from avatar.runs import list_checkpoints
    from synth.train import GanTrainOptions, run_training

    run_training(GanTrainOptions(dataset, preset.gan, run, device=device, resume=bool(list_checkpoints(run)),
                                 kimg=options.gan_kimg))
    return {"run": str(run), "preset": preset.gan, "kimg": options.gan_kimg}


def _swap(options: BuildOptions, preset: BuildPreset, device: str, stages: _Stages, work: Path,
          faces: Path) -> Path:
    from avatar.runs import list_checkpoints, run_preset
    from avatar.swap.data import SCAN_FILE
    from avatar.swap.train import SwapTrainOptions, run_swap_training

    if options.swap is not None:
        if not list_checkpoints(Path(options.swap)):
            raise BuildError(f"--swap {options.swap} holds no checkpoint")
        return Path(options.swap)
    run = work / "swap" / "run"

    def train(folder: Path) -> dict[str, Any]:
        resume = bool(list_checkpoints(run))
        if not resume:                                     # the check's face scan: the run need not scan again
            run.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(work / "check" / "driving_scan.npz", run / SCAN_FILE)
        run_swap_training(SwapTrainOptions(src=faces, dst=options.driving, out=run, preset=preset.swap, device=device,
                                           resume=resume, iters=options.swap_iters or preset.swap_iters,
                                           dst_frames=options.driving_frames, progress=options.progress))
        return {"run": str(run), "preset": run_preset(run) or preset.swap,      # a resumed run keeps its own
                "iters": options.swap_iters or preset.swap_iters}

    stages.run("swap", train)
    return run


def _bake(options: BuildOptions, run: Path, device: str, work: Path, folder: Path) -> dict[str, Any]:
    from avatar.files import write_npz_atomic
    from avatar.swap.predictor import SwapFaceModel
    from avatar.swap.video import swap_clip

    predictor = SwapFaceModel.from_run(run, device)
    swapped = swap_clip(options.driving, predictor, work / "check" / "driving_scan.npz", options.driving_frames,
                        progress=options.progress)
    write_npz_atomic(folder / "baked.npz", frames=np.stack(swapped.frames), indices=swapped.indices,
                     landmarks=swapped.scan.landmarks[swapped.indices], fps=np.float64(swapped.scan.fps))
    return {"frames": len(swapped.indices), "of": len(swapped.scan.faces_found)}


def _baked(work: Path) -> dict[str, np.ndarray]:
    with np.load(work / "bake" / "baked.npz", allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def _quality(options: BuildOptions, work: Path, checked: dict[str, Any], folder: Path) -> dict[str, Any]:
    """bench/swap_quality.py's figures on the preset's first `quality_frames` baked frames, and a strip of them."""
    from avatar.swap.data import read_some_frames
    from avatar.swap.quality import measure, strip

    baked = _baked(work)
    window = np.arange(min(get_preset(options.preset).quality_frames, len(baked["indices"])))
    wanted = set(baked["indices"][window].tolist())
    driving = [f for _, f in read_some_frames(options.driving, wanted, int(baked["indices"][window[-1]]) + 1)]
    frames = list(baked["frames"][window])
    figures = measure(frames, driving, baked["landmarks"][window], np.ones(len(window), bool),
                      np.asarray(checked["subject_embedding"]), np.asarray(checked["driver_embedding"]))
    strip(driving, frames, folder / "strip.png")
    return {"measured_frames": len(window), **figures}


def _bundle(options: BuildOptions, work: Path, info: dict[str, Any]) -> dict[str, Any]:
    import PIL.Image

    from avatar.bundle import write_bundle
    from avatar.driving import DrivingClip
    from avatar.provenance import ContentInfo
    from avatar.runs import latest_step, run_preset
    from synth.train import trained_kimg

    baked = _baked(work)
    clip = DrivingClip.from_landmarks(baked["frames"], baked["landmarks"], source=f"avatar {options.name}")
    preset: BuildPreset = info["preset"]
    quality = {k: v for k, v in info["quality"].items() if k != "seconds"}
    gan = None if options.faces else Path(options.gan) if options.gan else work / "gan" / "run"
    manifest = {
        "name": options.name,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "software": ContentInfo(title="").software,
        "consent": info["consent"],
        "sources": {"subject": [source_record(p) for p in options.subject],
                    "driving": source_record(options.driving),
                    "faces": "given (--faces)" if options.faces else "sampled from the GAN"},
        "build": {"preset": preset.name, "device": info["device"], "face_size": preset.face_size,
                  "gan_preset": None if gan is None else run_preset(gan) or preset.gan,
                  "gan_run": options.gan and str(options.gan),
                  "sampled_faces": None if options.faces else preset.faces,
                  "gan_kimg": None if gan is None else round(trained_kimg(gan), 3),
                  "swap_preset": run_preset(Path(info["swap_run"])) or preset.swap,
                  "swap_iters": latest_step(Path(info["swap_run"])),
                  "swap_run": options.swap and str(options.swap), "driving_frames": options.driving_frames},
        "driving": {**info["checked"]["analysis"], "driving_is_subject": info["checked"]["driving_is_subject"],
                    "baked_frames": info["baked"]["frames"]},
        "quality": quality,
    }
    picks = np.linspace(0, len(clip) - 1, 4).round().astype(int)
    images = {"preview.png": np.concatenate([clip.frames[i] for i in picks], axis=1),
              "strip.png": np.asarray(PIL.Image.open(work / "quality" / "strip.png").convert("RGB"))}
    write_bundle(Path(options.out), clip, manifest, images, fps=float(baked["fps"]))
    return {"out": str(options.out)}


def summary(manifest: dict[str, Any], out: Path) -> str:
    """The page printed at the end of a build."""
    q = manifest.get("quality", {})
    size = sum(f["bytes"] for f in manifest.get("files", {}).values()) / 1e6
    lines = [f"avatar {manifest['name']!r} is ready: {out} ({size:.1f} MB)",
             f"  consent on record: {len(manifest['consent'])} ({', '.join(c['role'] for c in manifest['consent'])})",
             f"  quality on {q.get('measured_frames')} frames: face found {q.get('face_found', 0):.0%}, closer to "
             f"the subject than to the driver {q.get('closer_to_subject', 0):.0%}, mouth-motion correlation "
             f"{q.get('mouth_correlation')}, colour change x{q.get('colour_change_ratio')}, landmark jitter "
             f"x{q.get('landmark_jitter_ratio')} (against the driving clip)",
             f"  look at it:  avatar inspect {out}",
             f"  serve it:    avatar serve --avatar {out}",
             f"  export:      avatar export --avatar {out} --dialogue DIALOGUE.txt -o dialogue.mp4"]
    return "\n".join(lines)


def main_build(options: BuildOptions) -> int:
    """The `avatar build` command's body: run, print the summary; Ctrl-C says how to continue."""
    try:
        manifest = build(options)
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to continue from the last finished stage and checkpoint",
              file=sys.stderr)
        return 130
    print(summary(manifest, Path(options.out)))
    return 0
