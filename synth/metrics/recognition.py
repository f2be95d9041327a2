"""face_recognition on face images: who is a face, and does it match the subject (the paper's Table 2, last row).

Every image whose short side is below 256 px is first enlarged to 256 px with bicubic interpolation (OpenCV
INTER_CUBIC), then dlib's HOG detector runs without pyramid upsampling (one upsample step if nothing is found);
the largest face is embedded. An image matches when its embedding lies within face_recognition's tolerance
(0.6) of the real set's reference: the element-wise median embedding of the real faces.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from tqdm import tqdm

from avatar.detect import MIN_DETECT_SIDE, TOLERANCE, embedding_distance, find_face_in_small, median_embedding
from synth.metrics.images import ImageSet, MetricsError, cached

DETECTION_METHOD = (f"images under {MIN_DETECT_SIDE} px enlarged to {MIN_DETECT_SIDE} px (OpenCV bicubic), "
                    f"HOG detector without upsampling (one step if none found), largest face")


@dataclass(frozen=True)
class FaceScan:
    """Per image: whether a face was found, its 128-d embedding and 68 landmarks (NaN where none was found)."""

    found: np.ndarray          # bool [N]
    embeddings: np.ndarray     # float64 [N, 128]
    landmarks: np.ndarray      # float32 [N, 68, 2], in the image's own pixels

    def faces(self) -> np.ndarray:
        return self.embeddings[self.found]


@dataclass(frozen=True)
class RecognitionCounts:
    matching: int
    not_matching: int
    not_faces: int


def scan_images(images: Sequence[np.ndarray], progress: bool = True) -> FaceScan:
    found = np.zeros(len(images), bool)
    embeddings = np.full((len(images), 128), np.nan)
    landmarks = np.full((len(images), 68, 2), np.nan, np.float32)
    for i, image in enumerate(tqdm(images, desc="face_recognition", unit="img", disable=not progress, leave=False)):
        face = find_face_in_small(image)
        if face is not None:
            found[i], embeddings[i], landmarks[i] = True, face.embedding, face.landmarks
    return FaceScan(found, embeddings, landmarks)


def scan_set(image_set: ImageSet, progress: bool = True) -> FaceScan:
    """scan_images, cached beside a dataset."""
    def compute() -> dict[str, np.ndarray]:
        scan = scan_images(image_set.images, progress)
        return {"found": scan.found, "embeddings": scan.embeddings, "landmarks": scan.landmarks}
    arrays = cached(image_set, "face-scan", DETECTION_METHOD, compute)
    return FaceScan(arrays["found"], arrays["embeddings"], arrays["landmarks"])


def reference_embedding(real: FaceScan) -> np.ndarray:
    if not real.found.any():
        raise MetricsError("face_recognition finds no face in the real set")
    return median_embedding(real.faces())


def compare(scan: FaceScan, reference: np.ndarray, tolerance: float = TOLERANCE) -> RecognitionCounts:
    """Matching / Not matching / Not faces counts of a scanned set against a reference embedding."""
    distances = embedding_distance(scan.faces(), reference)
    matching = int((distances <= tolerance).sum())
    return RecognitionCounts(matching, int(scan.found.sum()) - matching, int((~scan.found).sum()))
