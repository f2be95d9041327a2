"""The built-in avatar: a driving clip generated from scikit-image's public-domain `astronaut` photograph (NASA).

dlib finds two "faces" in the photo, both 90 px boxes: the astronaut's face at rows 76..166, columns
175..265 (score about 1.2) and, weakly, the mission patch on the suit (about 0.1); the highest-scoring one,
the real face, is used. The teeth the photo shows are inpainted away first. Every frame is the photo warped
piecewise-affinely over a Delaunay mesh of the 68 landmarks plus rings of head points and fixed border
points: lips, jaw and eyelids move to make mouth shapes and blinks, the whole head takes small shifts, tilts
and turns. Open mouths get a painted dark interior with upper teeth; closed eyes get a lash line. Landmarks
and descriptors of each frame are its warp targets (painting: avatar/face_paint.py; the warp: avatar/mesh_warp.py).
The clip is cached as an .npz keyed by GENERATOR_VERSION and a hash of this code and the modules it uses.
`python -m avatar.default_avatar` writes a contact sheet to var/default_clip_sheet.png.
"""
from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial import Delaunay
from tqdm import tqdm

from avatar import driving
from avatar.driving import ClipError, DrivingClip, eye_centres, inter_ocular
from avatar.face_paint import draw_lashes, hide_eyes, hide_teeth, paint_mouth_interior
from avatar.mesh_warp import (JAW_FOLLOW, LOWER_INNER, LOWER_LIP, UPPER_INNER, border_points, folds,
                               piecewise_affine)

log = logging.getLogger(__name__)

GENERATOR_VERSION = "astronaut-v2"


@functools.cache
def clip_source() -> str:
    """What the built-in clip says it is made from, with a short hash of the generator's code, so that any
    change to the code also invalidates the cache. Computed on first use, not at import."""
    digest = hashlib.sha256()
    for module in (__file__, driving.__file__, *(Path(__file__).with_name(name) for name in
                                                    ("detect.py", "face_paint.py", "mesh_warp.py"))):
        digest.update(Path(module).read_bytes())
    return (f"skimage.data.astronaut (NASA, public domain), warped by avatar.default_avatar "
            f"{GENERATOR_VERSION} ({digest.hexdigest()[:12]})")


def __getattr__(name: str) -> str:
    """`SOURCE`, the same as clip_source(), read lazily (PEP 562)."""
    if name == "SOURCE":
        return clip_source()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
DEFAULT_CACHE_DIR = Path(__file__).resolve().parents[1] / "var" / "avatars"

OPEN_GAP = 0.40                 # inner-lip gap at full opening, in inter-ocular distances (IOD)
OPENINGS = (0.0, 0.25, 0.5, 0.75, 1.0)
SHAPES = ("neutral", "wide", "round")
BLINKS = (0.45, 0.0)            # eye openness of the half-closed and closed blink frames
BLINK_OPENINGS = (0.0, 0.5)     # mouth openings that also get blink frames


@dataclass(frozen=True)
class HeadPose:
    """A small head motion, applied to the face mesh."""

    dx: float = 0.0      # shift right, pixels
    dy: float = 0.0      # shift down, pixels
    roll: float = 0.0    # tilt, degrees clockwise
    yaw: float = 0.0     # turn: nose-tip shift sideways, in IOD
    pitch: float = 0.0   # nod: nose-tip shift down, in IOD


def _pose_ring(n: int = 6) -> tuple[HeadPose, ...]:
    """The centre pose and `n` poses around it, neighbours one small step apart."""
    poses = [HeadPose()]
    for k in range(n):
        t = 2 * np.pi * k / n
        poses.append(HeadPose(dx=2.5 * np.cos(t), dy=1.5 * np.sin(t), roll=2.0 * np.sin(t + 0.8),
                              yaw=0.05 * np.cos(t), pitch=0.035 * np.sin(t)))
    return tuple(poses)


POSES = _pose_ring()


@dataclass(frozen=True)
class FrameSpec:
    """What one generated frame is meant to show."""

    pose: int             # index into POSES
    opening: float        # intended mouth opening, 0 closed .. 1 wide open
    shape: str            # one of SHAPES
    eyes: float = 1.0     # 1 open, 0 closed


def frame_specs() -> list[FrameSpec]:
    """The generated clip's frames, in order: per pose every mouth shape with open eyes, then blink frames."""
    specs = []
    for pose in range(len(POSES)):
        specs += [FrameSpec(pose, o, s) for o in OPENINGS for s in SHAPES]
        specs += [FrameSpec(pose, o, "neutral", e) for e in BLINKS for o in BLINK_OPENINGS]
    return specs


# --- landmark geometry ------------------------------------------------------------------------------------

# Depth of each landmark in front of the face plane (0 contour .. 1 nose tip), for the turn and nod.
_DEPTH = np.zeros(68, np.float32)
_DEPTH[17:27] = 0.35
_DEPTH[27:31] = (0.55, 0.7, 0.85, 1.0)
_DEPTH[31:36] = (0.8, 0.9, 1.0, 0.9, 0.8)
_DEPTH[36:48] = 0.3
_DEPTH[48:68] = 0.6
_DEPTH[4:13] = (0.1, 0.2, 0.3, 0.4, 0.45, 0.4, 0.3, 0.2, 0.1)

_UPPER_OUTER, _LOWER_OUTER = [50, 51, 52], [58, 57, 56]
_LIPS = np.arange(48, 68)


@dataclass(frozen=True)
class FaceFrame:
    """A face-aligned coordinate system: origin at the eye midpoint, unit = IOD, x along the eye line, y down."""

    origin: np.ndarray    # [2]
    u: np.ndarray         # [2] unit vector along the eye line
    v: np.ndarray         # [2] unit vector down the face
    iod: float

    @classmethod
    def of(cls, landmarks: np.ndarray) -> FaceFrame:
        left, right = eye_centres(landmarks)
        u = (right - left) / np.linalg.norm(right - left)
        return cls((left + right) / 2, u, np.array([-u[1], u[0]]), float(inter_ocular(landmarks)))

    def to_local(self, points: np.ndarray) -> np.ndarray:
        rel = (points - self.origin) / self.iod
        return np.stack([rel @ self.u, rel @ self.v], axis=-1)

    def to_image(self, local: np.ndarray) -> np.ndarray:
        return self.origin + self.iod * (local[..., :1] * self.u + local[..., 1:] * self.v)


def _fix_upper_lip(lm: np.ndarray) -> np.ndarray:
    """In the photo the upper lip is thin and dlib puts 61-63 on the teeth: lift them to the lip's edge."""
    lm = lm.copy()
    lm[UPPER_INNER, 1] = np.minimum(lm[UPPER_INNER, 1], lm[_UPPER_OUTER, 1] + 0.035)
    return lm


def _closed_mouth(lm: np.ndarray) -> np.ndarray:
    """Local landmarks with the lips brought together (the photo smiles with its teeth showing)."""
    lm = lm.copy()
    gap = lm[LOWER_INNER, 1] - lm[UPPER_INNER, 1]
    mid = (lm[LOWER_INNER, 1] + lm[UPPER_INNER, 1]) / 2
    lm[UPPER_INNER, 1] = mid - 0.004
    lm[LOWER_INNER, 1] = mid + 0.004
    lm[_UPPER_OUTER, 1] += gap / 4
    lm[_LOWER_OUTER, 1] -= gap / 4
    lm[[49, 53], 1] += gap[[0, 2]] / 8
    lm[[59, 55], 1] -= gap[[0, 2]] / 8
    return lm


def _shape_mouth(lm: np.ndarray, opening: float, shape: str) -> np.ndarray:
    """Local landmarks of a closed mouth made wide, round or neutral, then opened by `opening` (0..1)."""
    lm = lm.copy()
    centre = lm[[48, 54]].mean(0)
    outer, inner = np.arange(48, 60), np.arange(60, 68)
    squeeze = 1.0 - 0.08 * opening             # an opening mouth narrows a little
    if shape == "wide":
        lm[_LIPS, 0] = centre[0] + (lm[_LIPS, 0] - centre[0]) * 1.12 * squeeze
        lm[[48, 54, 60, 64], 1] -= 0.03
    elif shape == "round":
        lm[outer, 0] = centre[0] + (lm[outer, 0] - centre[0]) * 0.78 * squeeze
        lm[inner, 0] = centre[0] + (lm[inner, 0] - centre[0]) * (0.66 - 0.12 * opening)
        lm[[49, 50, 51, 52, 53], 1] -= 0.035     # lips pushed forward look fuller
        lm[[55, 56, 57, 58, 59], 1] += 0.035
    elif shape == "neutral":
        lm[_LIPS, 0] = centre[0] + (lm[_LIPS, 0] - centre[0]) * squeeze
    else:
        raise ValueError(f"unknown mouth shape {shape!r}; expected one of {SHAPES}")

    gap = opening * OPEN_GAP
    drop = 0.8 * gap                            # the jaw carries the lower lip; the upper lip lifts a little
    lm[:, 1] += drop * JAW_FOLLOW
    lm[LOWER_LIP, 1] += drop
    lm[UPPER_INNER, 1] -= gap - drop
    lm[[49, 50, 51, 52, 53], 1] -= 0.6 * (gap - drop)
    lm[[48, 54, 60, 64], 1] += 0.4 * drop
    return lm


def _blink(lm: np.ndarray, eyes: float) -> np.ndarray:
    """Local landmarks with both eyes closed down to `eyes` (1 open, 0 shut); the upper lid does most of it."""
    lm = lm.copy()
    for upper, lower in (([37, 38], [41, 40]), ([43, 44], [47, 46])):
        meet = lm[lower, 1] + 0.3 * (lm[upper, 1] - lm[lower, 1])
        lm[upper, 1] = meet + max(eyes, 0.03) * (lm[upper, 1] - meet)
        lm[lower, 1] = meet + max(eyes, 0.03) * (lm[lower, 1] - meet)
    return lm


def _turn(lm: np.ndarray, pose: HeadPose) -> np.ndarray:
    lm = lm.copy()
    lm[:, 0] += pose.yaw * _DEPTH
    lm[:, 1] += pose.pitch * _DEPTH
    return lm


# --- the mesh ---------------------------------------------------------------------------------------------


def _rings(frame: FaceFrame, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Head and shoulder control points around the face (image coords) and how much each follows the head."""
    t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    points, weights = [], []
    for scale, weight in ((1.0, 1.0), (1.6, 0.35)):
        down = np.sin(t) > 0
        local = np.stack([0.05 + 2.0 * scale * np.cos(t),
                          0.1 + np.where(down, 2.35, 2.25) * scale * np.sin(t)], axis=-1)
        points.append(frame.to_image(local))
        weights.append(np.full(len(t), weight))
    points, weights = np.concatenate(points), np.concatenate(weights)
    inside = np.all((points > 8) & (points < size - 9), axis=1)
    return points[inside], weights[inside]


def _head_motion(points: np.ndarray, weights: np.ndarray, pose: HeadPose, centre: np.ndarray) -> np.ndarray:
    """Rotate about `centre` and shift, each point by its weight (1 moves with the head, 0 stays)."""
    angle = np.radians(pose.roll) * weights[:, None]
    rel = points - centre
    cos, sin = np.cos(angle), np.sin(angle)
    rotated = np.concatenate([cos * rel[:, :1] - sin * rel[:, 1:], sin * rel[:, :1] + cos * rel[:, 1:]], 1)
    return centre + rotated + weights[:, None] * np.array([pose.dx, pose.dy])


# --- the generator ----------------------------------------------------------------------------------------


def find_face(image: np.ndarray) -> np.ndarray:
    """68 landmarks of the highest-scoring face, detected and fitted at 2x for sub-pixel precision."""
    from avatar.detect import find_faces

    big = cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    faces = find_faces(big, upsample=0, embed=False, retry=False)
    if not faces:
        raise ClipError("no face found in the source photograph")
    return max(faces, key=lambda face: face.score).landmarks / 2.0


def generate_default_clip(image: np.ndarray | None = None, specs: list[FrameSpec] | None = None,
                          progress: bool = True) -> DrivingClip:
    """Build the default avatar's driving clip (about 130 frames at 512x512) from the astronaut photo."""
    if image is None:
        from skimage import data
        image = data.astronaut()
    size = image.shape[0]
    source_lm = find_face(image)
    frame = FaceFrame.of(source_lm)
    rings, ring_weights = _rings(frame, size)
    border = border_points(size)
    src = np.concatenate([source_lm, rings, border]).astype(np.float64)
    triangles = Delaunay(src).simplices
    weights = np.concatenate([np.ones(68), ring_weights, np.zeros(len(border))])
    head_centre = frame.to_image(np.array([0.0, 0.6]))      # the head turns about the nose

    fixed_lm = frame.to_image(_fix_upper_lip(frame.to_local(source_lm)))
    image = hide_teeth(image, fixed_lm)
    shut_image = hide_eyes(image, fixed_lm)           # the source for closed eyes: eyeballs painted over
    closed = _closed_mouth(frame.to_local(fixed_lm))
    frames, landmarks = [], []
    for spec in tqdm(specs or frame_specs(), desc="default avatar", disable=not progress):
        pose = POSES[spec.pose]
        local = _turn(_blink(_shape_mouth(closed, spec.opening, spec.shape), spec.eyes), pose)
        dst = np.concatenate([frame.to_image(local), rings, border])
        dst = _head_motion(dst, weights, pose, head_centre)
        if folds(src, dst, triangles):
            raise ClipError(f"mesh folds over for {spec}; the generator's motions are too large")
        target_lm = dst[:68].astype(np.float32)
        if spec.eyes < 0.2:
            warped = draw_lashes(piecewise_affine(shut_image, src, dst, triangles), target_lm)
        else:
            warped = piecewise_affine(image, src, dst, triangles)
        frames.append(paint_mouth_interior(warped, target_lm))
        landmarks.append(target_lm)
    return DrivingClip.from_landmarks(np.stack(frames), np.stack(landmarks), source=clip_source())


def load_default_clip(cache_dir: Path | None = None) -> DrivingClip:
    """The default avatar's clip from the cache, generating (and caching) it when missing or outdated."""
    path = Path(cache_dir or DEFAULT_CACHE_DIR) / "default.npz"
    if path.is_file():
        try:
            clip = DrivingClip.load(path)
            if clip.source == clip_source():
                return clip
            log.info("default avatar cache %s is from another generator version; regenerating", path)
        except ClipError as exc:
            log.warning("default avatar cache unreadable (%s); regenerating", exc)
    clip = generate_default_clip()
    try:
        clip.save(path)
    except OSError as exc:
        log.warning("could not cache the default avatar at %s: %s", path, exc)
    return clip


def contact_sheet(clip: DrivingClip, columns: int = 19, crop: tuple[int, int, int, int] = (150, 40, 300, 210),
                  scale: float = 1.0) -> np.ndarray:
    """The clip's frames side by side, cropped to (x0, y0, x1, y1) around the face: RGB uint8, for a look."""
    x0, y0, x1, y1 = crop
    tiles = [cv2.resize(f[y0:y1, x0:x1], None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
             if scale != 1.0 else f[y0:y1, x0:x1] for f in clip.frames]
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % columns)
    rows = [np.concatenate(tiles[r:r + columns], axis=1) for r in range(0, len(tiles), columns)]
    return np.concatenate(rows, axis=0)


if __name__ == "__main__":
    out = DEFAULT_CACHE_DIR.parent / "default_clip_sheet.png"
    cv2.imwrite(str(out), cv2.cvtColor(contact_sheet(load_default_clip()), cv2.COLOR_RGB2BGR))
    print(f"wrote {out}")
