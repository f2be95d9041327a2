"""`avatar build` on real footage, as a user runs it: the bundle, resuming after a kill, and its refusals."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from build_support import (DRIVING, DRIVING_FRAMES, REPO, SUBJECT, SWAP_ITERS, build_command, consent_files,
                           training_env, write_video)

PAPER_DIALOGUE = REPO / "assets" / "dialogues" / "paper.txt"


def _avatar(*args: str, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "avatar.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_killed_build_continues_without_redoing_finished_stages(built_avatar):
    work = built_avatar.work
    assert built_avatar.killed.returncode != 0
    assert "check" in built_avatar.done_before_kill and "swap" not in built_avatar.done_before_kill
    for stage, mtime in built_avatar.done_before_kill.items():           # kept, not rewritten
        assert (work / stage / "done.json").stat().st_mtime == mtime
        assert f"{stage}: finished in an earlier run, kept" in built_avatar.finished.stdout
    log = [json.loads(line) for line in (work / "swap" / "run" / "log.jsonl").read_text().splitlines()]
    resumed = [row for row in log if row.get("event") == "resume"] or [row for row in log if "resumed" in row]
    iters = [row["iter"] for row in log if "iter" in row]
    assert iters == sorted(iters), "the swap's log goes on from its checkpoint, not from 0"
    assert json.loads((work / "swap" / "done.json").read_text())["iters"] == SWAP_ITERS
    assert resumed or len(set(iters)) == len(iters)
    for stage in ("bake", "quality", "bundle"):
        assert (work / stage / "done.json").is_file()
    assert "is ready" in built_avatar.finished.stdout and "avatar serve --avatar" in built_avatar.finished.stdout
    said = built_avatar.finished.stdout
    assert "driving clip: " in said and "frames with the mouth closed" in said      # the analysis, printed


def test_bundle_records_consent_sources_analysis_and_quality(built_avatar):
    from avatar.bundle import open_bundle
    from avatar.files import file_sha256

    manifest = open_bundle(built_avatar.bundle).manifest
    assert manifest["name"] == "Test Avatar A"
    roles = {c["role"]: c for c in manifest["consent"]}
    assert roles["subject"]["name"] == "Subject A" and len(roles["subject"]["sha256"]) == 64
    assert "driving person" in roles
    assert manifest["sources"]["subject"][0]["sha256"] == file_sha256(SUBJECT)
    assert manifest["sources"]["driving"]["sha256"] == file_sha256(DRIVING)
    driving = manifest["driving"]
    assert driving["frames"] == DRIVING_FRAMES and driving["usable_share"] > 0.9
    assert driving["closed_mouth_frames"] > 0 and driving["open_mouth_frames"] > 0
    assert not driving["driving_is_subject"]
    quality = manifest["quality"]
    for key in ("closer_to_subject", "mouth_correlation", "colour_change_ratio", "landmark_jitter_ratio"):
        assert np.isfinite(quality[key]), key
    assert quality["face_found"] >= 0.9
    assert built_avatar.bundle.stat().st_size < 60e6


def test_a_face_set_whose_mouths_barely_move_is_warned_about(built_avatar, subject_dataset):
    from avatar.build_check import mouth_coverage
    from avatar.bundle import open_bundle
    from avatar.driving import mouth_descriptors, mouth_range
    from synth.dataset import load_metadata

    driving = open_bundle(built_avatar.bundle).manifest["driving"]          # the real driving clip's analysis
    real = np.array([m["landmarks"] for m in load_metadata(subject_dataset)], np.float32)
    assert mouth_coverage(mouth_range(real), driving) == []                  # the subject's own frames: all mouths
    opening = mouth_descriptors(real)[:, 0]
    middle = real[(opening > 0.15) & (opening < 0.25)]       # what an undertrained GAN gives: always half open
    assert len(middle) >= 5
    warnings = mouth_coverage(mouth_range(middle), driving)
    assert any("none of them closes the mouth" in w for w in warnings)
    assert any("none of them opens the mouth wide" in w for w in warnings)
    assert any("spans" in w for w in warnings)


def test_inspect_prints_the_manifest_and_verifies_hashes(built_avatar):
    result = _avatar("inspect", str(built_avatar.bundle))
    assert result.returncode == 0, result.stderr
    for text in ("Test Avatar A", "Subject A", "Driver B", "verified", "mouth_correlation"):
        assert text in result.stdout, text


@pytest.fixture(scope="module")
def exported(built_avatar, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "dialogue.mp4"
    env = {**os.environ, "AVATAR_C2PA_DIR": str(built_avatar.c2pa)}
    result = _avatar("export", "--avatar", str(built_avatar.bundle), "--dialogue", str(PAPER_DIALOGUE),
                     "-o", str(out), "--db", f"sqlite:///{out.parent / 'bot.sqlite3'}", env=env)
    assert result.returncode == 0, result.stderr
    return out


def _mouth_opening(frame: np.ndarray):
    from avatar.detect import find_faces
    from avatar.driving import mouth_descriptors

    faces = find_faces(frame, upsample=0, embed=False)
    return float(mouth_descriptors(faces[0].landmarks)[0]) if len(faces) == 1 else None


def _cues(transcript: Path) -> list[tuple[float, float, str]]:
    """(start, end, speaker) of each WebVTT cue."""
    seconds = lambda s: sum(float(x) * m for x, m in zip(s.split(":"), (3600, 60, 1)))   # noqa: E731
    lines, cues = transcript.read_text().splitlines(), []
    for k, line in enumerate(lines):
        if " --> " in line:
            start, end = line.split(" --> ")
            cues.append((seconds(start), seconds(end), lines[k + 1][3:].split(">")[0]))
    return cues


def test_export_shows_the_face_and_the_mouth_moves_with_speech(exported):
    from avatar.swap.data import read_frames
    from avatar.types import FPS

    frames = list(read_frames(exported))
    speaking, pausing, looked, missed = [], [], 0, 0
    for start, end, speaker in _cues(exported.with_suffix(".vtt")):
        for i in range(int(start * FPS) + 2, min(int(end * FPS) - 2, len(frames)), 3):
            opening = _mouth_opening(frames[i])
            looked += 1
            if opening is None:
                missed += 1
            else:
                (speaking if speaker == "Avatar" else pausing).append(opening)
    assert missed <= 0.05 * looked, f"no face in {missed} of {looked} sampled frames"
    assert len(speaking) > 30 and len(pausing) > 10
    # A smoke swap (32 px, 600 steps) draws a faint mouth, and what the detector reads off it moves with the lossy
    # encodes in between (x264 gives the bundle's frames a little differently from one build to the next, from
    # the same baked frames): four builds read 0.072-0.076 speaking against 0.037-0.051 pausing (ratio 1.42-1.95)
    # and a speaking mouth wider than a pausing one in 70-83 % of the pairs. A mouth that did not follow the
    # speech would give a ratio near 1 and about 50 % of the pairs.
    speaking, pausing = np.asarray(speaking), np.asarray(pausing)
    wider = np.mean(speaking[:, None] > pausing[None]) + 0.5 * np.mean(speaking[:, None] == pausing[None])
    assert speaking.mean() > 1.2 * pausing.mean() and wider > 0.62, (speaking.mean(), pausing.mean(), wider)


def test_export_is_signed_for_the_custom_avatar_and_a_changed_byte_is_tampering(exported, built_avatar, tmp_path):
    from avatar.provenance import verify_file

    ca = built_avatar.c2pa / "ca.pem"
    result = verify_file(exported, ca=ca)
    assert result.trusted and result.intact
    assert result.avatar_name == "Test Avatar A"
    assert any("Subject A" in c for c in result.consent)
    data = bytearray(exported.read_bytes())
    middle = len(data) // 2                        # inside the video data (faststart puts moov first)
    data[middle] ^= 0xFF
    changed = tmp_path / "changed.mp4"
    changed.write_bytes(bytes(data))
    assert not verify_file(changed, ca=ca).intact


def _no_face_video(path: Path, frames: int = 90) -> Path:
    gradient = np.broadcast_to(np.linspace(0, 255, 160, dtype=np.uint8)[None, :, None], (160, 160, 3))
    return write_video(path, [np.ascontiguousarray(np.roll(gradient, k, axis=1)) for k in range(frames)], fps=30)


def _two_people_video(path: Path, frames: int = 30) -> Path:
    """subject_A and driving_B side by side: two people in every frame."""
    from avatar.swap.data import read_frames

    pairs = zip(read_frames(SUBJECT, frames), read_frames(DRIVING, frames))
    return write_video(path, [np.ascontiguousarray(np.concatenate(pair, axis=1)) for pair in pairs], fps=30)


@pytest.mark.parametrize("case", ["no consent", "driving without a face", "subject with two people",
                                  "driving person without consent"])
def test_bad_input_ends_with_a_clear_message_and_exit_2(case, subject_dataset, tmp_path):
    consent, driving_consent = consent_files(tmp_path / "consent")
    subject, driving = SUBJECT, DRIVING
    if case == "no consent":
        consent = None
    elif case == "driving without a face":
        driving = _no_face_video(tmp_path / "noface.mp4")
    elif case == "subject with two people":
        subject = _two_people_video(tmp_path / "two.mp4")
    else:
        driving_consent = None
    out, work = tmp_path / "avatar", tmp_path / "work"
    result = subprocess.run(build_command(out, work, consent, driving_consent, subject=subject, driving=driving,
                                          faces=subject_dataset), cwd=REPO, capture_output=True, text=True,
                            timeout=600, env=training_env())
    assert result.returncode == 2, result.stdout + result.stderr
    expected = {"no consent": "--consent CONSENT_FILE is required", "driving without a face": "cannot drive an avatar",
                "subject with two people": "more than one person",
                "driving person without consent": "--driving-consent"}[case]
    assert expected in result.stderr
    assert not out.exists()
    assert not (work / "swap").exists()


def test_the_whole_chain_stops_at_a_gan_too_weak_for_the_identity_filter_and_says_what_to_do(build_without_faces):
    """prepare -> GAN -> sample as a user without --faces runs it (a session fixture, built in the background);
    the smoke GAN's faces are never the subject. (That finished stages are kept on a rerun is shown by the killed
    build of the session's custom avatar.)"""
    first, work, out = build_without_faces
    assert first.returncode == 2, first.stdout + first.stderr
    assert "not good enough yet" in first.stderr and "--faces" in first.stderr
    for k, stage in enumerate(("check", "prepare", "gan", "sample"), 1):
        assert f"[{k}/8] {stage}" in first.stdout
    assert (work / "prepare" / "done.json").is_file() and (work / "gan" / "done.json").is_file()
    assert list((work / "gan" / "run" / "checkpoints").glob("ckpt-*.pt"))
    assert not (work / "sample" / "done.json").exists() and not out.exists()


def test_serve_and_export_refuse_an_altered_bundle_before_starting(built_avatar, tmp_path):
    import zipfile

    folder = tmp_path / "altered"
    with zipfile.ZipFile(built_avatar.bundle) as bundle:
        bundle.extractall(folder)
    data = bytearray((folder / "clip.npz").read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / "clip.npz").write_bytes(bytes(data))
    served = _avatar("serve", "--avatar", str(folder), "--port", "0", timeout=120)
    assert served.returncode == 2 and "clip.npz was altered" in served.stderr, served.stderr[-2000:]
    exported = _avatar("export", "--avatar", str(folder), "--dialogue", str(PAPER_DIALOGUE),
                       "-o", str(tmp_path / "x.mp4"), timeout=120)
    assert exported.returncode == 2 and "clip.npz was altered" in exported.stderr
    assert not (tmp_path / "x.mp4").exists()


def test_a_trained_swap_run_is_reused_with_swap(built_avatar, subject_dataset, tmp_path):
    consent, driving_consent = consent_files(tmp_path / "consent")
    out, work = tmp_path / "again", tmp_path / "work"                       # a folder bundle this time
    run = built_avatar.work / "swap" / "run"
    command = build_command(out, work, consent, driving_consent, "--swap", str(run), "--driving-frames", "150",
                            faces=subject_dataset)
    at = command.index("--swap-iters")                 # the manifest tells what the reused run trained, unasked
    del command[at:at + 2]
    command[command.index("--preset") + 1] = "cpu"     # whose swap preset (cpu64-mouth) the run did not train with
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600,
                            env=training_env(AVATAR_C2PA_DIR=str(built_avatar.c2pa)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "in 4 stages: check, bake, quality, bundle" in result.stdout
    assert not (work / "swap").exists()
    from avatar.bundle import load_bundle

    bundle, clip = load_bundle(out)
    assert out.is_dir() and len(clip) == 150 and bundle.manifest["build"]["swap_run"] == str(run)
    assert bundle.manifest["build"]["swap_iters"] == SWAP_ITERS       # not the smoke preset's 300
    assert bundle.manifest["build"]["preset"] == "cpu" and bundle.manifest["build"]["swap_preset"] == "smoke"
    assert bundle.manifest["build"]["gan_kimg"] is None               # --faces: no GAN


def test_the_cpu_estimate_says_whether_the_cpu_has_bfloat16_units(monkeypatch):
    import synth.presets
    from avatar.build_presets import get_preset, typical_minutes

    cpu = get_preset("cpu")
    monkeypatch.setattr(synth.presets, "native_bf16", lambda device: True)
    minutes, on = typical_minutes(cpu, "cpu")
    assert minutes == cpu.typical and "AMX" in on
    monkeypatch.setattr(synth.presets, "native_bf16", lambda device: False)
    minutes, on = typical_minutes(cpu, "cpu")
    assert minutes == {**cpu.typical, **cpu.without_bf16} and minutes["gan"] > 2 * cpu.typical["gan"]
    assert minutes["bake"] == cpu.typical["bake"]
    assert "without bfloat16" in on
    assert typical_minutes(get_preset("gpu"), "cuda") == (get_preset("gpu").typical, get_preset("gpu").typical_on)
