"""The driving clip: frames with per-frame 68-point landmarks and the descriptors the planner matches on.

Descriptors are measured from landmarks only and normalised by the inter-ocular distance (IOD, the distance
between the two eye centres), each mapped from a fixed raw range to [0, 1], so values from different clips
and different face sizes are comparable:

- mouth opening:   mean gap between the inner lips (61-67, 62-66, 63-65) / IOD, raw 0.00 .. 0.40 -> 0 .. 1
- mouth width:     distance between the mouth corners (48-54) / IOD,           raw 0.55 .. 1.15 -> 0 .. 1
- mouth roundness: outer-lip height (51-57) / outer-lip width (48-54),         raw 0.25 .. 0.95 -> 0 .. 1,
                   times narrowness (1 - width): an O is tall for its width and narrow.
- eye openness:    mean eye aspect ratio ((|37-41| + |38-40|) / (2 |36-39|)),    raw 0.05 .. 0.35 -> 0 .. 1
- pose:            (x, y, roll): eye midpoint in pixels and the eye line's angle in degrees.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from avatar.files import write_atomic

N_LANDMARKS = 68

MOUTH_OPENING_RANGE = (0.00, 0.40)   # inner-lip gap / IOD
MOUTH_WIDTH_RANGE = (0.55, 1.15)     # corner distance / IOD
MOUTH_ASPECT_RANGE = (0.25, 0.95)    # outer-lip height / outer-lip width
EYE_ASPECT_RANGE = (0.05, 0.35)      # eye aspect ratio
CLOSED_MOUTH = 0.05                  # mouth opening (0..1) at or below which the mouth is closed
OPEN_MOUTH = 0.30                    # ... at or above which it is open

# face_recognition's dict keys, in order, with the dlib indices each list holds.
_FR_PARTS = {
    "chin": list(range(0, 17)),
    "left_eyebrow": list(range(17, 22)),
    "right_eyebrow": list(range(22, 27)),
    "nose_bridge": list(range(27, 31)),
    "nose_tip": list(range(31, 36)),
    "left_eye": list(range(36, 42)),
    "right_eye": list(range(42, 48)),
    "top_lip": list(range(48, 55)) + [64, 63, 62, 61, 60],
    "bottom_lip": list(range(54, 60)) + [48, 60, 67, 66, 65, 64],
}


class ClipError(ValueError):
    """A driving clip could not be built or read."""


class NoFaceError(ClipError):
    """A video frame shows no face."""


class MultipleFacesError(ClipError):
    """A video frame shows more than one face."""


def landmarks_68(shape: Any) -> np.ndarray:
    """68 (x, y) points, float32 [68, 2], from a face_recognition landmark dict or a dlib full_object_detection."""
    if isinstance(shape, dict):
        points = np.zeros((N_LANDMARKS, 2), np.float32)
        for part, indices in _FR_PARTS.items():
            if part not in shape or len(shape[part]) != len(indices):
                raise ClipError(f"landmark dict lacks a complete {part!r}: expected the 68-point ('large') model")
            points[indices] = np.asarray(shape[part], np.float32)
        return points
    if hasattr(shape, "parts"):
        parts = shape.parts()
        if len(parts) != N_LANDMARKS:
            raise ClipError(f"expected a 68-point dlib shape, got {len(parts)} points")
        return np.array([[p.x, p.y] for p in parts], np.float32)
    raise TypeError(f"cannot read landmarks from {type(shape).__name__}")


def _check_landmarks(landmarks: np.ndarray) -> np.ndarray:
    landmarks = np.asarray(landmarks, np.float32)
    if landmarks.shape[-2:] != (N_LANDMARKS, 2):
        raise ClipError(f"landmarks must be [..., 68, 2], got shape {landmarks.shape}")
    return landmarks


def _scale(raw: np.ndarray, lo_hi: tuple[float, float]) -> np.ndarray:
    lo, hi = lo_hi
    return np.clip((raw - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def _dist(landmarks: np.ndarray, i: int, j: int) -> np.ndarray:
    return np.linalg.norm(landmarks[..., i, :] - landmarks[..., j, :], axis=-1)


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the image-left (36-41) and image-right (42-47) eyes, [..., 2] each."""
    landmarks = _check_landmarks(landmarks)
    return landmarks[..., 36:42, :].mean(-2), landmarks[..., 42:48, :].mean(-2)


def inter_ocular(landmarks: np.ndarray) -> np.ndarray:
    """Distance between the eye centres, the unit every descriptor is measured in; [...]."""
    left, right = eye_centres(landmarks)
    return np.maximum(np.linalg.norm(right - left, axis=-1), 1e-6)


def mouth_descriptors(landmarks68: np.ndarray) -> np.ndarray:
    """(opening, width, roundness) in [0, 1] from 68-point landmarks: float32 [3], or [N, 3] for [N, 68, 2]."""
    lm = _check_landmarks(landmarks68)
    iod = inter_ocular(lm)
    gap = (_dist(lm, 61, 67) + _dist(lm, 62, 66) + _dist(lm, 63, 65)) / 3.0
    corners = _dist(lm, 48, 54)
    opening = _scale(gap / iod, MOUTH_OPENING_RANGE)
    width = _scale(corners / iod, MOUTH_WIDTH_RANGE)
    aspect = _scale(_dist(lm, 51, 57) / np.maximum(corners, 1e-6), MOUTH_ASPECT_RANGE)
    roundness = aspect * (1.0 - width)
    return np.stack([opening, width, roundness], axis=-1).astype(np.float32)


def mouth_range(landmarks68: np.ndarray) -> dict[str, Any]:
    """How far a set of faces [N, 68, 2] opens its mouth: opening p5/p50/p95 and the closed and open counts
    (a driving clip's frames, or the face set a swap learns the subject's mouth from)."""
    lm = np.asarray(landmarks68, np.float32).reshape(-1, N_LANDMARKS, 2)
    opening = mouth_descriptors(lm)[:, 0] if len(lm) else np.zeros(0, np.float32)
    pct = lambda q: round(float(np.percentile(opening, q)), 3) if len(opening) else None   # noqa: E731
    return {"mouth_opening_p5": pct(5), "mouth_opening_p50": pct(50), "mouth_opening_p95": pct(95),
            "closed_mouth": int((opening <= CLOSED_MOUTH).sum()), "open_mouth": int((opening >= OPEN_MOUTH).sum())}


def format_mouth_range(mouth: dict[str, Any], unit: str = "faces") -> str:
    """A mouth_range as words: "mouth opening p5/p50/p95 ..., N faces with the mouth closed, M open"."""
    return (f"mouth opening p5/p50/p95 {mouth['mouth_opening_p5']}/{mouth['mouth_opening_p50']}/"
            f"{mouth['mouth_opening_p95']}, {mouth['closed_mouth']} {unit} with the mouth closed, "
            f"{mouth['open_mouth']} open")


def eye_openness(landmarks68: np.ndarray) -> np.ndarray:
    """Mean eye aspect ratio of both eyes mapped to [0, 1] (0 closed, 1 wide open); float32 [...]."""
    lm = _check_landmarks(landmarks68)
    left = (_dist(lm, 37, 41) + _dist(lm, 38, 40)) / (2.0 * np.maximum(_dist(lm, 36, 39), 1e-6))
    right = (_dist(lm, 43, 47) + _dist(lm, 44, 46)) / (2.0 * np.maximum(_dist(lm, 42, 45), 1e-6))
    return _scale((left + right) / 2.0, EYE_ASPECT_RANGE)


def head_pose(landmarks68: np.ndarray) -> np.ndarray:
    """(x, y, roll): eye midpoint in pixels and the eye line's angle in degrees; float32 [..., 3]."""
    left, right = eye_centres(landmarks68)
    mid = (left + right) / 2.0
    delta = right - left
    roll = np.degrees(np.arctan2(delta[..., 1], delta[..., 0]))
    return np.concatenate([mid, roll[..., None]], axis=-1).astype(np.float32)


@dataclass
class DrivingClip:
    """Frames of one face with what the planner needs per frame; every array has N rows."""

    frames: np.ndarray       # uint8 [N, H, W, 3] RGB
    landmarks: np.ndarray    # float32 [N, 68, 2] (x, y) in frame pixels
    mouth: np.ndarray        # float32 [N, 3] (opening, width, roundness) in [0, 1]
    pose: np.ndarray         # float32 [N, 3] (x, y, roll): eye midpoint in pixels, eye-line angle in degrees
    eyes: np.ndarray         # float32 [N] eye openness in [0, 1]
    source: str = ""         # where the frames came from, for humans

    def __post_init__(self) -> None:
        n = len(self.frames)
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            raise ClipError(f"frames must be uint8 [N, H, W, 3], got {self.frames.dtype} {self.frames.shape}")
        if n == 0:
            raise ClipError("a driving clip needs at least one frame")
        expected = {"landmarks": (n, N_LANDMARKS, 2), "mouth": (n, 3), "pose": (n, 3), "eyes": (n,)}
        for name, shape in expected.items():
            value = getattr(self, name)
            if value.shape != shape:
                raise ClipError(f"{name} must have shape {shape}, got {value.shape}")
            setattr(self, name, value.astype(np.float32, copy=False))

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the frames."""
        return self.frames.shape[2], self.frames.shape[1]

    @classmethod
    def from_landmarks(cls, frames: np.ndarray, landmarks: np.ndarray, source: str = "") -> DrivingClip:
        """Measure every descriptor from the landmarks."""
        landmarks = _check_landmarks(landmarks)
        return cls(frames=np.ascontiguousarray(frames, np.uint8), landmarks=landmarks,
                   mouth=mouth_descriptors(landmarks), pose=head_pose(landmarks), eyes=eye_openness(landmarks),
                   source=source)

    def save(self, path: str | Path) -> None:
        """Write an .npz file atomically (a temporary file beside it, then a rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda f: np.savez(f, frames=self.frames, landmarks=self.landmarks, mouth=self.mouth,
                                              pose=self.pose, eyes=self.eyes, source=np.array(self.source)))

    @classmethod
    def load(cls, path: str | Path) -> DrivingClip:
        """Read a clip written by save(); a missing, truncated or corrupt file raises ClipError."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in ("frames", "landmarks", "mouth", "pose", "eyes")}
                source = str(data["source"]) if "source" in data else ""
        except FileNotFoundError:
            raise ClipError(f"no driving clip at {path}") from None
        except (zipfile.BadZipFile, KeyError, ValueError, EOFError, OSError) as exc:
            raise ClipError(f"{path} is not a readable driving clip ({exc.__class__.__name__}: {exc})") from None
        return cls(**arrays, source=source)

    @classmethod
    def from_video(cls, path: str | Path, max_frames: int | None = None, upsample: int = 1) -> DrivingClip:
        """Decode a video and find exactly one face per frame (`avatar.detect`, HOG at `upsample`, no retry)."""
        import av

        from avatar.detect import find_faces

        path = Path(path)
        if not path.is_file():
            raise ClipError(f"no video at {path}")
        frames, landmarks = [], []
        try:
            container = av.open(str(path))
        except av.error.FFmpegError as exc:
            raise ClipError(f"cannot open video {path}: {exc}") from None
        with container:
            for index, frame in enumerate(container.decode(video=0)):
                if max_frames is not None and index >= max_frames:
                    break
                rgb = np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
                faces = find_faces(rgb, upsample, embed=False, retry=False)
                if not faces:
                    raise NoFaceError(f"{path.name}: no face found in frame {index}")
                if len(faces) > 1:
                    raise MultipleFacesError(f"{path.name}: {len(faces)} faces in frame {index}; "
                                             "a driving clip needs exactly one")
                frames.append(rgb)
                landmarks.append(faces[0].landmarks)
        if not frames:
            raise ClipError(f"{path.name}: no video frames decoded")
        return cls.from_landmarks(np.stack(frames), np.stack(landmarks), source=str(path))
