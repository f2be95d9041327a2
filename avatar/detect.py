"""Face detection, 68 landmarks and 128-d embeddings with face_recognition (dlib): the one face finder.

Detection is dlib's HOG detector; its window is 80 px, so a face must be about 80 px (upsample 0) or 40 px
(upsample 1) tall to be found. The embedding is dlib's ResNet descriptor computed from the 68-point shape, the
same network face_recognition.face_encodings uses. Embeddings of one person are within about 0.6 of each other
(face_recognition's default tolerance).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from types import ModuleType

import cv2
import numpy as np

TOLERANCE = 0.6          # face_recognition's default: same person when the embedding distance is at most this
MIN_DETECT_SIDE = 256    # smaller images are enlarged to this short side (bicubic) before detection


@dataclass(frozen=True)
class Face:
    """One detected face in an image's pixel coordinates."""

    box: tuple[int, int, int, int]         # left, top, right, bottom
    landmarks: np.ndarray                  # float32 [68, 2] (x, y), dlib's 68-point order
    embedding: np.ndarray | None = None    # float64 [128], None when not asked for
    score: float = 0.0                     # the HOG detector's confidence

    @property
    def area(self) -> int:
        left, top, right, bottom = self.box
        return (right - left) * (bottom - top)


@cache
def _dlib() -> ModuleType:
    """face_recognition's loaded dlib models, read on first use: modules that only import this one (to train on
    faces already found, say) start without them."""
    from face_recognition import api

    return api


def auto_upsample(image: np.ndarray) -> int:
    """HOG pyramid upsampling for a frame: one step below 720 px short side (faces down to ~40 px), else none."""
    return 1 if min(image.shape[:2]) < 720 else 0


def find_faces(image: np.ndarray, upsample: int | None = None, embed: bool = True,
               embed_single_only: bool = False, retry: bool = True) -> list[Face]:
    """All faces in an RGB uint8 image [H, W, 3], largest first; with `retry`, one more upsample step if none.

    `upsample=None` picks `auto_upsample(image)`. With `embed_single_only` embeddings are computed only when
    exactly one face is found (callers that drop multi-face images save the ResNet pass).
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"find_faces expects an RGB uint8 image [H, W, 3], got {image.dtype} {list(image.shape)}")
    image = np.ascontiguousarray(image)     # dlib silently misreads strided arrays (PyAV rows can be padded)
    level = auto_upsample(image) if upsample is None else upsample
    fr_api = _dlib()
    rects, scores, _ = fr_api.face_detector.run(image, level, 0.0)
    if len(rects) == 0 and retry:
        rects, scores, _ = fr_api.face_detector.run(image, level + 1, 0.0)
    shapes = [fr_api.pose_predictor_68_point(image, r) for r in rects]
    want_embed = embed and (len(shapes) == 1 or not embed_single_only)
    faces = []
    for rect, shape, score in zip(rects, shapes, scores):
        points = np.array([(p.x, p.y) for p in shape.parts()], np.float32)
        embedding = np.array(fr_api.face_encoder.compute_face_descriptor(image, shape, 1)) if want_embed else None
        faces.append(Face((rect.left(), rect.top(), rect.right(), rect.bottom()), points, embedding, float(score)))
    return sorted(faces, key=lambda f: -f.area)


def enlarge_for_detection(image: np.ndarray, min_side: int = MIN_DETECT_SIDE) -> tuple[np.ndarray, float]:
    """Enlarge a small image (short side below `min_side`) with bicubic interpolation; returns it and the scale."""
    short = min(image.shape[:2])
    if short >= min_side:
        return image, 1.0
    scale = min_side / short
    h, w = image.shape[:2]
    size = (round(w * scale), round(h * scale))
    return cv2.resize(image, size, interpolation=cv2.INTER_CUBIC), scale


def find_face_in_small(image: np.ndarray, embed: bool = True) -> Face | None:
    """The largest face of an image of any size (small ones enlarged first), in the original image's coordinates."""
    big, scale = enlarge_for_detection(image)
    faces = find_faces(big, upsample=0, embed=embed)
    if not faces:
        return None
    face = faces[0]
    left, top, right, bottom = face.box
    box = (round(left / scale), round(top / scale), round(right / scale), round(bottom / scale))
    return Face(box, face.landmarks / scale, face.embedding, face.score)


def median_embedding(embeddings: np.ndarray) -> np.ndarray:
    """Element-wise median of embeddings [N, 128]: robust to a minority of other people's faces."""
    if len(embeddings) == 0:
        raise ValueError("no face embeddings to take a median of")
    return np.median(np.asarray(embeddings, np.float64), axis=0)


def embedding_distance(embeddings: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Euclidean distance of each embedding [N, 128] (or one [128]) to a reference [128]."""
    return np.linalg.norm(np.asarray(embeddings) - reference, axis=-1)
