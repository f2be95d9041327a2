"""Helpers for tests that run `avatar build` (imported by name: the root conftest puts tests/ on sys.path)."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from footage import DRIVING, REPO, SUBJECT

DRIVING_FRAMES = 180       # 6 s: above the 5 s of usable face a driving clip needs
SWAP_ITERS = 600           # smoke iterations: a blurry face that the detector finds in every frame


@dataclass(frozen=True)
class BuiltAvatar:
    bundle: Path
    work: Path
    c2pa: Path                                  # AVATAR_C2PA_DIR the build signed its previews with
    killed: subprocess.CompletedProcess         # the first run, killed in the swap stage
    finished: subprocess.CompletedProcess       # the same command again
    done_before_kill: dict[str, float]          # stage -> mtime of its done.json when the first run was killed


def training_env(**extra: str) -> dict[str, str]:
    """The environment of a test's subprocess that trains (a build, `avatar swap train`): the user's, plus
    `extra`, with OpenMP threads that spin while they wait (OMP_WAIT_POLICY=ACTIVE, which the avatar command
    leaves as it finds it). The product's default, PASSIVE, suits a CPU shared with other work; a test's smoke
    training has the cores to itself, and its tiny steps took half the time with spinning threads (100 swap
    steps: 9 s instead of 19 s)."""
    return {**os.environ, "OMP_WAIT_POLICY": "ACTIVE", **extra}


def build_command(out: Path, work: Path, consent: Path | None, driving_consent: Path | None, *extra: str,
                  subject: Path = SUBJECT, driving: Path = DRIVING, faces: Path | None = None) -> list[str]:
    command = [sys.executable, "-m", "avatar.cli", "build", "--subject", str(subject), "--driving", str(driving),
               "--name", "Test Avatar A", "--subject-name", "Subject A", "--out", str(out), "--work", str(work),
               "--preset", "smoke", "--driving-frames", str(DRIVING_FRAMES), "--swap-iters", str(SWAP_ITERS),
               "--quiet"]
    if consent is not None:
        command += ["--consent", str(consent)]
    if driving_consent is not None:
        command += ["--driving-consent", str(driving_consent), "--driving-name", "Driver B"]
    if faces is not None:
        command += ["--faces", str(faces)]
    return command + list(extra)


def consent_files(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    subject, driving = folder / "consent_subject.txt", folder / "consent_driving.txt"
    subject.write_text("I, Subject A, agree that an AI avatar with my face is made for testing avatar-service.\n")
    driving.write_text("I, Driver B, agree that my recorded motion drives an AI avatar for testing.\n")
    return subject, driving


def write_video(path: Path, frames: list[np.ndarray], fps: int = 25) -> Path:
    """An H.264 mp4 of RGB frames (even sides)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def short_video(source: Path, path: Path, frames: int) -> Path:
    """The first `frames` frames of a video, re-encoded (a shorter subject video for a quicker prepare)."""
    from avatar.swap.data import read_frames

    return write_video(path, list(read_frames(source, frames)), fps=30)
