"""How good a swapped clip is, measured against the untouched driving clip (`bench/swap_quality.py` and the
quality report that `avatar build` writes into an avatar bundle's manifest).

- identity: face_recognition distance of each output face to the subject's reference embedding and to the
  driving person's; the share of usable frames whose output face is closer to the subject (a frame where no face
  is found counts against it), and the same among found faces;
- motion kept: correlation of mouth opening on output and driving frames; head pose error (eye-line angle in
  degrees, eye midpoint in pixels);
- temporal stability: mean frame-to-frame change of the face region's mean Lab colour, output / driving, and
  landmark jitter (mean second difference of the landmarks), output / driving;
- and of a src face set itself, the same identity figures: a swap cannot be more the subject than its src faces.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
import PIL.Image

from avatar.detect import find_face_in_small, find_faces
from avatar.files import image_files
from avatar.driving import head_pose, mouth_descriptors
from avatar.swap.colour import to_lab

TARGETS = {"closer_to_subject": ">= 0.9", "mouth_correlation": ">= 0.9", "colour_change_ratio": "<= 1.2"}


def mean_embedding(frames: Iterable[np.ndarray]) -> np.ndarray:
    """The mean face_recognition embedding of the frames that show exactly one face."""
    embeddings = []
    for frame in frames:
        faces = find_faces(frame, upsample=0)
        if len(faces) == 1:
            embeddings.append(faces[0].embedding)
    if not embeddings:
        raise ValueError("no frame shows exactly one face: no reference embedding")
    return np.mean(embeddings, axis=0)


def face_set_identity(folder: Path, subject: np.ndarray, driver: np.ndarray) -> dict[str, float]:
    """A FACES folder's images against the subject's and the driver's reference embeddings: mean distance to
    each, and the share of images whose face is closer to the subject (an image without a face counts against)."""
    to_subject, to_driver = [], []
    files = image_files(folder)
    for path in files:
        face = find_face_in_small(np.asarray(PIL.Image.open(path).convert("RGB")))
        if face is not None:
            to_subject.append(np.linalg.norm(face.embedding - subject))
            to_driver.append(np.linalg.norm(face.embedding - driver))
    ts, td = np.array(to_subject), np.array(to_driver)
    return {"src_faces": len(files),
            "src_dist_to_subject": round(float(ts.mean()), 4) if len(ts) else float("nan"),
            "src_dist_to_driver": round(float(td.mean()), 4) if len(td) else float("nan"),
            "src_closer_to_subject": round(float((ts < td).sum()) / max(len(files), 1), 4)}


def face_colour(frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Mean Lab colour inside the landmark hull (jaw and brows)."""
    mask = np.zeros(frame.shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(landmarks[:27]).astype(np.int32)), 1)
    return to_lab(frame)[mask > 0].mean(0)


def colour_change(frames: list[np.ndarray], landmarks: np.ndarray) -> float:
    """Mean frame-to-frame change of the face's mean Lab colour."""
    colours = np.stack([face_colour(f, lm) for f, lm in zip(frames, landmarks)])
    return float(np.linalg.norm(np.diff(colours, axis=0), axis=1).mean())


def jitter(landmarks: np.ndarray) -> float:
    """Mean length of the landmarks' second difference over runs of three frames with landmarks."""
    ok = np.isfinite(landmarks).all(axis=(1, 2))
    trio = ok[:-2] & ok[1:-1] & ok[2:]
    second = landmarks[2:] - 2 * landmarks[1:-1] + landmarks[:-2]
    return float(np.linalg.norm(second[trio], axis=-1).mean())


def measure(frames: list[np.ndarray], driving: list[np.ndarray], driving_lm: np.ndarray, usable: np.ndarray,
            subject: np.ndarray, driver: np.ndarray) -> dict[str, float]:
    """The figures for output frames against the driving frames (usable frames only; all lists index alike)."""
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
        "dist_to_subject": round(float(ts.mean()), 4) if len(ts) else float("nan"),
        "dist_to_driver": round(float(td.mean()), 4) if len(td) else float("nan"),
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
    """A PNG of `count` driving frames above the same swapped frames."""
    picks = np.linspace(0, len(driving) - 1, count).round().astype(int)
    small = lambda f: cv2.resize(f, (180, 180 * f.shape[0] // f.shape[1]), interpolation=cv2.INTER_AREA)  # noqa
    rows = [np.concatenate([small(frames[i]) for i in picks], axis=1) for frames in (driving, swapped)]
    PIL.Image.fromarray(np.concatenate(rows, axis=0)).save(path)
