"""The per-frame face step around alignment (`avatar.align`): the template face, its mask, and blending back.

`IdentityFaceModel` returns its input with a soft mask over the face; the face-swap model implements the same
`avatar.types.FaceModel` protocol.
"""
from __future__ import annotations

import cv2
import numpy as np

from avatar.align import face_roi

FACE_SIZE = 256   # side of an aligned face, pixels

# A symmetric 68-point face in aligned coordinates (fractions of the side): the default avatar's neutral,
# closed-mouth landmarks, aligned with `avatar.align.align_transform` and averaged with their mirror image.
TEMPLATE_68 = np.array([
    [0.233, 0.500], [0.238, 0.568], [0.248, 0.633], [0.260, 0.700],
    [0.283, 0.762], [0.322, 0.820], [0.377, 0.865], [0.433, 0.903],
    [0.500, 0.916], [0.567, 0.903], [0.623, 0.865], [0.678, 0.820],
    [0.717, 0.762], [0.740, 0.700], [0.752, 0.633], [0.762, 0.568],
    [0.767, 0.500], [0.272, 0.444], [0.302, 0.408], [0.350, 0.399],
    [0.397, 0.403], [0.442, 0.422], [0.558, 0.422], [0.603, 0.403],
    [0.650, 0.399], [0.698, 0.408], [0.728, 0.444], [0.500, 0.476],
    [0.500, 0.525], [0.500, 0.571], [0.500, 0.620], [0.442, 0.645],
    [0.471, 0.653], [0.500, 0.661], [0.529, 0.653], [0.558, 0.645],
    [0.327, 0.479], [0.357, 0.459], [0.395, 0.460], [0.426, 0.489],
    [0.392, 0.493], [0.354, 0.492], [0.574, 0.489], [0.605, 0.460],
    [0.643, 0.459], [0.673, 0.479], [0.646, 0.492], [0.608, 0.493],
    [0.369, 0.693], [0.418, 0.699], [0.467, 0.703], [0.500, 0.710],
    [0.533, 0.703], [0.582, 0.699], [0.631, 0.693], [0.587, 0.746],
    [0.538, 0.766], [0.500, 0.771], [0.462, 0.766], [0.413, 0.746],
    [0.386, 0.700], [0.465, 0.723], [0.500, 0.729], [0.535, 0.723],
    [0.614, 0.700], [0.535, 0.725], [0.500, 0.731], [0.465, 0.725],
], np.float32)


def face_mask(landmarks: np.ndarray, size: int = FACE_SIZE, feather: float = 0.04) -> np.ndarray:
    """Soft mask float32 [size, size] over the hull of jaw and brows (brows raised to cover the forehead).

    `landmarks` are in aligned pixels; the hull is shrunk by the feather width so the soft edge stays inside.
    """
    lm = np.asarray(landmarks, np.float32)
    brows = lm[17:27].copy()
    brows[:, 1] -= 0.35 * (lm[36:48, 1].mean() - brows[:, 1].mean()) + 0.02 * size
    hull = cv2.convexHull(np.concatenate([lm[0:17], brows]))
    mask = np.zeros((size, size), np.float32)
    cv2.fillConvexPoly(mask, np.round(hull * 8).astype(np.int32), 1.0, cv2.LINE_AA, shift=3)
    sigma = feather * size
    mask = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * int(sigma) + 1,) * 2))
    return cv2.GaussianBlur(mask, (0, 0), sigma / 2)


class IdentityFaceModel:
    """The first face model: faces come back unchanged, with a soft mask from the template face's hull."""

    def __init__(self, size: int = FACE_SIZE) -> None:
        self.size = size
        self.mask = face_mask(TEMPLATE_68 * size, size)
        self.mask.flags.writeable = False

    def __call__(self, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """faces uint8 [N, S, S, 3] -> (the same faces, masks float32 [N, S, S], a read-only broadcast)."""
        if faces.ndim != 4 or faces.shape[1:] != (self.size, self.size, 3):
            raise ValueError(f"expected aligned faces [N, {self.size}, {self.size}, 3], got {faces.shape}")
        return faces, np.broadcast_to(self.mask, faces.shape[:3])


def blend_into(frame: np.ndarray, face: np.ndarray, mask: np.ndarray, transform: np.ndarray,
               roi: tuple[int, int, int, int] | None = None) -> None:
    """In place: only the pixels the aligned face covers are touched (`roi`, computed when not given)."""
    x0, y0, x1, y1 = roi if roi is not None else face_roi(transform, face.shape[0], frame.shape)
    if x1 <= x0 or y1 <= y0:
        return
    local = transform.copy()
    local[:, 2] += local[:, :2] @ np.array([x0, y0], np.float64)     # the same warp, in ROI coordinates
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    back = cv2.warpAffine(face, local, (x1 - x0, y1 - y0), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(np.ascontiguousarray(mask, np.float32), local, (x1 - x0, y1 - y0), flags=flags,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)[..., None]
    region = frame[y0:y1, x0:x1].astype(np.float32)
    frame[y0:y1, x0:x1] = (region + (back.astype(np.float32) - region) * alpha + 0.5).astype(np.uint8)
