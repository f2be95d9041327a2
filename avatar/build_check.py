"""The check stage of `avatar build`: the consent statements are there, the subject video(s) show one person,
and the driving clip can drive an avatar (enough usable face, closed and open mouths) and whose face it shows.
Refusals are BuildError."""
from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any, Callable

import numpy as np

from avatar.driving import CLOSED_MOUTH, OPEN_MOUTH, eye_openness, format_mouth_range, mouth_range
from avatar.files import file_sha256

SUBJECT_SAMPLES = 16           # frames per subject video looked at by the check
DRIVER_SAMPLES = 12            # usable driving frames whose median embedding is the driving person
SAME_PERSON = 0.5              # face_recognition distance below which two faces are taken for one person
SEVERAL_PEOPLE_SHARE = 0.25    # subject frames with more than one face, of those with any, that refuse a video
MIN_USABLE_SECONDS = 5.0       # the planner needs at least this much face to choose from
NARROW_MOUTHS = 0.5            # a face set whose mouth-opening span (p5..p95) is under this share of the driving
                               # clip's is warned about


class BuildError(ValueError):
    """The build cannot go on: missing consent, unusable footage, a work folder for other inputs, a weak GAN."""


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
    n = len(usable)
    lm = landmarks[usable]
    mouth = mouth_range(lm)
    eyes = eye_openness(lm) if len(lm) else np.zeros(0, np.float32)
    shut = eyes < 0.5 * np.median(eyes) if len(eyes) else np.zeros(0, bool)
    blinks = int(np.sum(shut[1:] & ~shut[:-1]) + (shut[0] if len(shut) else 0))
    return {"frames": int(n), "fps": round(float(fps), 3), "duration_s": round(n / fps, 2),
            "usable_frames": int(usable.sum()), "usable_share": round(float(usable.mean()), 4) if n else 0.0,
            "usable_s": round(float(usable.sum()) / fps, 2),
            **{key: value for key, value in mouth.items() if key.startswith("mouth_opening")},
            "closed_mouth_frames": mouth["closed_mouth"], "open_mouth_frames": mouth["open_mouth"], "blinks": blinks}


def driving_summary(analysis: dict[str, Any]) -> str:
    """One line of what the driving clip offers the planner, as `build` prints it."""
    mouth = {**analysis, "closed_mouth": analysis["closed_mouth_frames"], "open_mouth": analysis["open_mouth_frames"]}
    return (f"{analysis['duration_s']} s, {analysis['usable_share']:.0%} of the frames with one usable face, "
            f"{format_mouth_range(mouth, 'frames')}, {analysis['blinks']} blink(s)")


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


def mouth_coverage(faces: dict[str, Any], driving: dict[str, Any]) -> list[str]:
    """Warnings when the subject's face set (an avatar.driving.mouth_range) opens its mouth over much less than
    the driving clip (its analysis) does: the swap learns the subject's mouth from those faces alone, so the
    swapped face would follow the driver's mouth less closely."""
    warn = []
    if faces["closed_mouth"] == 0 and driving["closed_mouth_frames"] > 0:
        warn.append(f"none of them closes the mouth (opening <= {CLOSED_MOUTH}), where "
                    f"{driving['closed_mouth_frames']} driving frames do")
    if faces["open_mouth"] == 0 and driving["open_mouth_frames"] > 0:
        warn.append(f"none of them opens the mouth wide (opening >= {OPEN_MOUTH}), where "
                    f"{driving['open_mouth_frames']} driving frames do")
    span = faces["mouth_opening_p95"] - faces["mouth_opening_p5"]
    driving_span = driving["mouth_opening_p95"] - driving["mouth_opening_p5"]
    if span < NARROW_MOUTHS * driving_span:
        warn.append(f"their mouth opening spans {faces['mouth_opening_p5']}..{faces['mouth_opening_p95']} (p5..p95), "
                    f"the driving clip's {driving['mouth_opening_p5']}..{driving['mouth_opening_p95']}")
    return warn


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
