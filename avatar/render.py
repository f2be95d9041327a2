"""Per-frame rendering: driving frame -> aligned face -> face model -> blended back -> visible AI label.

Everything that depends only on the driving frame (alignment transform and the region it covers) is computed
once at construction, so a frame costs two small warps, the face model and a blend over the face region.
"""
from __future__ import annotations

from typing import Any, Callable

import cv2
import numpy as np

from avatar.driving import DrivingClip
from avatar.align import align, align_transform, face_roi
from avatar.face import FACE_SIZE, blend_into
from avatar.types import FaceModel

LABEL_MARGIN = 8          # pixels between the label box and the frame's corner
LABEL_BOX_OPACITY = 0.65  # the dark box behind the text


def label_patch(text: str, frame_width: int) -> tuple[np.ndarray, np.ndarray]:
    """The label drawn once: (RGB uint8 [h, w, 3], opacity float32 [h, w, 1]) of white text on a dark box."""
    scale = max(frame_width / 1100, 0.35)
    thickness = max(int(round(scale * 2)), 1)
    (tw, th), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    pad = max(int(round(th * 0.4)), 3)
    h, w = th + baseline + 2 * pad, tw + 2 * pad
    ink = np.zeros((h, w), np.uint8)
    cv2.putText(ink, text, (pad, pad + th), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thickness, cv2.LINE_AA)
    text_alpha = ink.astype(np.float32)[..., None] / 255.0
    colour = np.full((h, w, 3), 255.0, np.float32) * text_alpha
    opacity = LABEL_BOX_OPACITY + (1.0 - LABEL_BOX_OPACITY) * text_alpha
    # Premultiplied: out = frame * (1 - opacity) + colour.
    return colour, opacity


def _stamp(out: np.ndarray, colour: np.ndarray, opacity: np.ndarray, box: tuple[int, int, int, int]) -> None:
    x0, y0, x1, y1 = box
    region = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = (region * (1.0 - opacity) + colour + 0.5).astype(np.uint8)


def draw_label(frame: np.ndarray, text: str = "AI-generated") -> np.ndarray:
    """A copy of `frame` with the label in its bottom-left corner, as the renderer draws it."""
    colour, opacity = label_patch(text, frame.shape[1])
    h, w = colour.shape[:2]
    y1 = frame.shape[0] - LABEL_MARGIN
    out = np.array(frame, np.uint8, copy=True)
    _stamp(out, colour, opacity, (LABEL_MARGIN, y1 - h, LABEL_MARGIN + w, y1))
    return out


class Renderer:
    """Renders output frames of one driving clip through one face model; safe to share across threads."""

    def __init__(self, clip: DrivingClip, face_model: FaceModel | None, label: str = "AI-generated",
                 face_size: int = FACE_SIZE) -> None:
        """`face_model` None: the clip's frames are final (a baked custom avatar), only the label is drawn."""
        self.clip = clip
        self.face_model = face_model
        self.face_size = face_size
        self.label = label
        shape = clip.frames.shape[1:]
        self._transforms = np.stack([align_transform(lm, face_size) for lm in clip.landmarks])   # [N, 2, 3]
        self._rois = [face_roi(t, face_size, shape) for t in self._transforms]
        self._label, self._label_opacity = label_patch(label, shape[1]) if label else (None, None)

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of rendered frames."""
        return self.clip.frame_size

    def render(self, index: int) -> np.ndarray:
        """Output frame for driving frame `index`: uint8 [H, W, 3] RGB, a new array."""
        if not 0 <= index < len(self.clip):
            raise IndexError(f"driving frame {index} out of range 0..{len(self.clip) - 1}")
        frame = self.clip.frames[index]
        out = frame.copy()
        if self.face_model is not None:
            transform = self._transforms[index]
            faces, masks = self.face_model(align(frame, transform, self.face_size)[None])
            blend_into(out, faces[0], masks[0], transform, self._rois[index])
        self._draw_label(out)
        return out

    def label_box(self) -> tuple[int, int, int, int] | None:
        """(x0, y0, x1, y1) of the label in the frame (bottom-left corner), or None without a label."""
        if self._label is None:
            return None
        h, w = self._label.shape[:2]
        height = self.clip.frames.shape[1]
        y1 = height - LABEL_MARGIN
        return LABEL_MARGIN, y1 - h, LABEL_MARGIN + w, y1

    def _draw_label(self, out: np.ndarray) -> None:
        box = self.label_box()
        if box is not None:
            _stamp(out, self._label, self._label_opacity, box)


def to_i420(frame: np.ndarray) -> np.ndarray:
    """RGB uint8 [H, W, 3] to planar YUV 4:2:0 uint8 [H * 3 / 2, W], the layout H.264 and VP8 encoders take."""
    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2YUV_I420)


class I420Frames:
    """Rendered frames converted to YUV 4:2:0 once per driving frame, for every encoder that needs them.

    A rendered frame depends only on its driving frame, so neither the render nor the colour conversion
    need be repeated per output frame or per viewer. `wrap`, if given, turns each read-only YUV array into
    what is cached and returned (the exporter keeps PyAV VideoFrames). Thread-safe enough for workers: a race
    converts twice.
    """

    def __init__(self, max_bytes: int = 256 * 2**20, wrap: Callable[[np.ndarray], Any] | None = None) -> None:
        self.max_bytes = max_bytes        # beyond this, further frames are converted every time
        self._bytes = 0
        self._wrap = wrap
        self._frames: dict[int, Any] = {}

    def get(self, index: int, render: Callable[[int], np.ndarray]) -> Any:
        index = int(index)
        frame = self._frames.get(index)
        if frame is None:
            yuv = to_i420(render(index))
            yuv.flags.writeable = False
            frame = self._wrap(yuv) if self._wrap else yuv
            if self._bytes + yuv.nbytes <= self.max_bytes:
                self._frames[index] = frame
                self._bytes += yuv.nbytes
        return frame
