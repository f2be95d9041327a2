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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from avatar.files import file_sha256, write_json_atomic

SUBJECT_SAMPLES = 16           # frames per subject video looked at by the check
DRIVER_SAMPLES = 12            # usable driving frames whose median embedding is the driving person
SAME_PERSON = 0.5              # face_recognition distance below which two faces are taken for one person
SEVERAL_PEOPLE_SHARE = 0.25    # subject frames with more than one face, of those with any, that refuse a video
MIN_USABLE_SECONDS = 5.0       # the planner needs at least this much face to choose from
CLOSED_MOUTH = 0.05            # mouth opening (0..1, see avatar.driving) at or below which the mouth is closed
OPEN_MOUTH = 0.30              # ... at or above which it is open
DONE_FILE = "done.json"
INPUTS_FILE = "build.json"


class BuildError(ValueError):
    """The build cannot go on: missing consent, unusable footage, a work folder for other inputs, a weak GAN."""


@dataclass(frozen=True)
class BuildPreset:
    """What each stage runs with, and how long it typically takes (minutes, measured on the machine named)."""

    name: str
    face_size: int            # `synth prepare --size`
    every: int                # `synth prepare --every`
    gan: str                  # synth preset
    faces: int                # `synth sample --n`
    swap: str                 # swap preset
    swap_iters: int | None    # None: the swap preset's length
    typical: dict[str, float] = field(default_factory=dict)
    typical_on: str = "2 CPU cores"
    quality_frames: int = 150  # baked frames measured for the quality report (face detection and embedding each)


PRESETS = {
    "smoke": BuildPreset("smoke", 64, 6, "smoke", 64, "smoke", 300,
                         {"check": 1, "prepare": 2, "gan": 0.5, "sample": 0.5, "swap": 0.5, "bake": 0.5,
                          "quality": 0.5, "bundle": 0.2}, quality_frames=60),
    "cpu": BuildPreset("cpu", 64, 2, "cpu64", 1000, "cpu64", None,
                       {"check": 2, "prepare": 6, "gan": 65, "sample": 5, "swap": 120, "bake": 2, "quality": 1,
                        "bundle": 1}),
    "gpu": BuildPreset("gpu", 256, 1, "paper256", 1000, "gpu256", None,
                       {"check": 2, "prepare": 15, "gan": 280, "sample": 3, "swap": 100, "bake": 2, "quality": 1,
                        "bundle": 1}, typical_on="one H200 GPU (GAN and swap; the rest on its CPU)"),
}


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


def get_preset(name: str) -> BuildPreset:
    if name not in PRESETS:
        raise BuildError(f"unknown build preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def slug(name: str) -> str:
    """A file-name-safe form of an avatar's name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "avatar"


# --- consent and inputs -----------------------------------------------------------------------------------------


def consent_record(path: Path | None, role: str, person: str, option: str) -> dict[str, Any]:
    """The consent statement's file name, SHA-256 and size with whose it is and today's date; refuses none."""
    if path is None:
        raise BuildError(f"{option} CONSENT_FILE is required: a statement by the {role} (text, PDF or recording) "
                         f"that they agree to an avatar being made of them; nothing is built without it")
    path = Path(path)
    if not path.is_file():
        raise BuildError(f"{option}: no consent file at {path}")
    if path.stat().st_size == 0:
        raise BuildError(f"{option}: {path} is empty; a consent statement must say something")
    return {"role": role, "name": person, "file": path.name, "sha256": file_sha256(path),
            "bytes": path.stat().st_size, "date": datetime.date.today().isoformat()}


def source_record(path: Path) -> dict[str, Any]:
    return {"file": Path(path).name, "sha256": file_sha256(path), "bytes": Path(path).stat().st_size}


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


# --- the check stage --------------------------------------------------------------------------------------------


def _sampled_frames(video: Path, count: int, wanted: Callable[[int], bool] = lambda i: True,
                    max_frames: int | None = None):
    """About `count` evenly spread frames (index, RGB) of a video among those `wanted`."""
    from avatar.swap.data import count_frames, read_some_frames

    total = count_frames(video, max_frames)                          # a first pass counts: nothing is converted
    indices = [i for i in range(total) if wanted(i)]
    picks = set(np.asarray(indices)[np.linspace(0, len(indices) - 1, min(count, len(indices))).round()
                                    .astype(int)].tolist()) if indices else set()
    return list(read_some_frames(video, picks, max_frames))


def check_subject(videos: tuple[Path, ...]) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The subject's median face embedding; refuses a video of several people or without a face."""
    from avatar.detect import embedding_distance, find_faces, median_embedding

    embeddings, reports = [], []
    for video in videos:
        counts = {"sampled": 0, "no_face": 0, "one_face": 0, "several_faces": 0}
        found = []
        for _, frame in _sampled_frames(Path(video), SUBJECT_SAMPLES):
            faces = find_faces(frame)
            counts["sampled"] += 1
            key = "no_face" if not faces else "one_face" if len(faces) == 1 else "several_faces"
            counts[key] += 1
            if len(faces) == 1:
                found.append(faces[0].embedding)
        with_face = counts["one_face"] + counts["several_faces"]
        if with_face and counts["several_faces"] > SEVERAL_PEOPLE_SHARE * with_face:
            raise BuildError(f"{Path(video).name}: {counts['several_faces']} of {counts['sampled']} frames looked at "
                             f"show more than one person; a subject video must show the consenting subject alone")
        if counts["one_face"] < 3:
            raise BuildError(f"{Path(video).name}: a single face was found in only {counts['one_face']} of "
                             f"{counts['sampled']} frames looked at; the subject's face must be visible")
        embeddings.append(median_embedding(np.stack(found)))
        reports.append({"file": Path(video).name, **counts})
    subject = median_embedding(np.stack(embeddings))
    for video, embedding in zip(videos, embeddings):
        distance = float(embedding_distance(embedding, subject))
        if distance > SAME_PERSON:
            raise BuildError(f"{Path(video).name} shows someone else than the other subject videos (face distance "
                             f"{distance:.2f}); all subject videos must show the same person")
    return subject, reports


def analyse_driving(landmarks: np.ndarray, usable: np.ndarray, fps: float) -> dict[str, Any]:
    """What the motion planner will have to choose from: duration, usable share, mouth range, blinks."""
    from avatar.driving import eye_openness, mouth_descriptors

    n = len(usable)
    lm = landmarks[usable]
    opening = mouth_descriptors(lm)[:, 0] if len(lm) else np.zeros(0, np.float32)
    eyes = eye_openness(lm) if len(lm) else np.zeros(0, np.float32)
    shut = eyes < 0.5 * np.median(eyes) if len(eyes) else np.zeros(0, bool)
    blinks = int(np.sum(shut[1:] & ~shut[:-1]) + (shut[0] if len(shut) else 0))
    pct = lambda q: round(float(np.percentile(opening, q)), 3) if len(opening) else None   # noqa: E731
    return {"frames": int(n), "fps": round(float(fps), 3), "duration_s": round(n / fps, 2),
            "usable_frames": int(usable.sum()), "usable_share": round(float(usable.mean()), 4) if n else 0.0,
            "usable_s": round(float(usable.sum()) / fps, 2),
            "mouth_opening_p5": pct(5), "mouth_opening_p50": pct(50), "mouth_opening_p95": pct(95),
            "closed_mouth_frames": int((opening <= CLOSED_MOUTH).sum()),
            "open_mouth_frames": int((opening >= OPEN_MOUTH).sum()), "blinks": blinks}


def driving_problems(analysis: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(refusals, warnings) for a driving clip's analysis, each with its numbers."""
    refuse, warn = [], []
    if analysis["usable_s"] < MIN_USABLE_SECONDS:
        refuse.append(f"only {analysis['usable_s']:.1f} s of it show exactly one face ({analysis['usable_frames']} "
                      f"of {analysis['frames']} frames); the planner needs at least {MIN_USABLE_SECONDS:.0f} s")
    else:
        if analysis["closed_mouth_frames"] == 0:
            refuse.append(f"no frame shows a closed mouth (opening <= {CLOSED_MOUTH}); the avatar could not stop "
                          "talking")
        if analysis["open_mouth_frames"] == 0:
            refuse.append(f"no frame shows an open mouth (opening >= {OPEN_MOUTH}); the avatar could not speak")
    if refuse:
        return refuse, warn
    if analysis["usable_share"] < 0.8:
        warn.append(f"only {analysis['usable_share']:.0%} of the frames show exactly one face")
    if analysis["usable_s"] < 20:
        warn.append(f"{analysis['usable_s']:.1f} s of usable face is short: expect repeated motion "
                    "(30 s or more of natural speech is better)")
    if analysis["open_mouth_frames"] < 0.03 * analysis["usable_frames"]:
        warn.append(f"the mouth is open in only {analysis['open_mouth_frames']} frames: speech will look muted")
    if analysis["blinks"] == 0:
        warn.append("no blink found: the avatar will stare")
    return refuse, warn


def check_driving(video: Path, scan_cache: Path, max_frames: int | None, subject: np.ndarray,
                  progress: bool) -> dict[str, Any]:
    """The driving clip's face scan (kept for the swap and bake), its analysis, and whose face it shows."""
    from avatar.detect import embedding_distance, find_faces, median_embedding
    from avatar.swap.data import cached_scan

    scan = cached_scan(video, scan_cache, max_frames, progress)
    analysis = analyse_driving(scan.landmarks, scan.usable, scan.fps)
    refuse, warn = driving_problems(analysis)
    if refuse:
        raise BuildError(f"driving clip {Path(video).name} cannot drive an avatar: " + "; ".join(refuse))
    found = []
    for _, frame in _sampled_frames(video, DRIVER_SAMPLES, lambda i: bool(scan.usable[i]), max_frames):
        faces = find_faces(frame, upsample=0)
        if len(faces) == 1:
            found.append(faces[0].embedding)
    if not found:
        raise BuildError(f"driving clip {Path(video).name}: no face could be recognised for identity")
    driver = median_embedding(np.stack(found))
    distance = float(embedding_distance(driver, subject))
    return {"analysis": analysis, "warnings": warn, "driver_embedding": driver.tolist(),
            "driver_to_subject": round(distance, 4), "driving_is_subject": distance < SAME_PERSON}


# --- the build --------------------------------------------------------------------------------------------------


class _Stages:
    """Runs named stages in order, each once: a stage with a done.json is kept and its result read back."""

    def __init__(self, work: Path, names: list[str], preset: BuildPreset, say: Callable[[str], None]):
        self.work, self.names, self.preset, self.say = work, names, preset, say
        self.started = time.monotonic()

    def run(self, name: str, body: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
        k, folder = self.names.index(name) + 1, self.work / name
        done = folder / DONE_FILE
        if done.is_file():
            self.say(f"[{k}/{len(self.names)}] {name}: finished in an earlier run, kept")
            return json.loads(done.read_text())
        left = sum(self.preset.typical.get(s, 0) for s in self.names[k - 1:])
        self.say(f"[{k}/{len(self.names)}] {name} (typically {self.preset.typical.get(name, 0):g} min; about "
                 f"{left:g} min left in all on {self.preset.typical_on}; {self._elapsed()} so far)")
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
    stages = _Stages(work, names, preset, say)

    def check(folder: Path) -> dict[str, Any]:
        subject, subject_report = check_subject(tuple(options.subject))
        driving = check_driving(options.driving, folder / "driving_scan.npz", options.driving_frames, subject,
                                options.progress)
        return {"subject_embedding": subject.tolist(), "subject_videos": subject_report, **driving}

    checked = stages.run("check", check)
    for warning in checked["warnings"]:
        say(f"warning: driving clip: {warning}")
    if not checked["driving_is_subject"] and options.driving_consent is None:
        raise BuildError(f"the driving clip shows someone other than the subject (face distance "
                         f"{checked['driver_to_subject']:.2f}); their consent is needed as well: "
                         "--driving-consent FILE [--driving-name NAME]")
    faces = _faces(options, preset, device, stages, work)
    run = _swap(options, preset, device, stages, work, faces)
    baked = stages.run("bake", lambda folder: _bake(options, run, device, work, folder))
    quality = stages.run("quality", lambda folder: _quality(options, work, checked, folder))
    info = {"consent": consent, "checked": checked, "quality": quality, "faces": str(faces), "swap_run": str(run),
            "device": device, "preset": preset, "baked": baked}
    stages.run("bundle", lambda folder: _bundle(options, work, info))
    from avatar.bundle import open_bundle

    return open_bundle(out).manifest


def _faces(options: BuildOptions, preset: BuildPreset, device: str, stages: _Stages, work: Path) -> Path:
    """The subject's faces the swap learns: given, or prepared -> GAN -> sampled."""
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
        return {"faces": str(out), **counts}

    stages.run("sample", sample)
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
    from synth.train import run_training

    run_training(dataset, preset.gan, run, device=device, resume=bool(list_checkpoints(run)), kimg=options.gan_kimg)
    return {"run": str(run), "preset": preset.gan, "kimg": options.gan_kimg}


def _swap(options: BuildOptions, preset: BuildPreset, device: str, stages: _Stages, work: Path,
          faces: Path) -> Path:
    from avatar.runs import list_checkpoints
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
        return {"run": str(run), "preset": preset.swap, "iters": options.swap_iters or preset.swap_iters}

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

    baked = _baked(work)
    clip = DrivingClip.from_landmarks(baked["frames"], baked["landmarks"], source=f"avatar {options.name}")
    preset: BuildPreset = info["preset"]
    quality = {k: v for k, v in info["quality"].items() if k != "seconds"}
    manifest = {
        "name": options.name,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "software": ContentInfo(title="").software,
        "consent": info["consent"],
        "sources": {"subject": [source_record(p) for p in options.subject],
                    "driving": source_record(options.driving),
                    "faces": "given (--faces)" if options.faces else "sampled from the GAN"},
        "build": {"preset": preset.name, "device": info["device"], "face_size": preset.face_size,
                  "gan_preset": None if options.faces else preset.gan, "gan_run": options.gan and str(options.gan),
                  "sampled_faces": None if options.faces else preset.faces,
                  "swap_preset": preset.swap, "swap_iters": options.swap_iters or preset.swap_iters,
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
