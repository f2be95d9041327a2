"""The swap's two face sets: the subject's faces (a FACES folder) and the driving person's (a driving video).

A FACES folder is what `avatar synth sample` writes: aligned PNGs plus `metadata.json` with each image's 68
landmarks in its own pixels. A folder of other face images works too: their faces are found and aligned. Both
sets are aligned with the one shared crop rule (`avatar.align`), so src and dst faces sit on one template.

A driving video is scanned frame by frame for faces. Only frames with exactly one face are usable: the others
are left out of training and out of everything the avatar may show, and counted.
"""
from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from avatar.align import align_face
from avatar.detect import find_face_in_small, find_faces
from avatar.files import file_sha256, image_files, write_npz_atomic

MIN_SRC_FACES = 16          # fewer subject faces cannot teach a decoder a person
MIN_USABLE_SHARE = 0.5      # a driving video with fewer usable frames is refused
METADATA_FILE = "metadata.json"
SCAN_FILE = "dst_scan.npz"      # where a run folder keeps its driving video's face scan


class SwapDataError(ValueError):
    """A FACES folder or driving video the swap cannot train on or apply to."""


@dataclass(frozen=True)
class FaceSet:
    """Aligned faces of one identity."""

    images: np.ndarray      # uint8 [N, S, S, 3] RGB
    landmarks: np.ndarray   # float32 [N, 68, 2] in aligned pixels
    source: str = ""

    def __len__(self) -> int:
        return len(self.images)

    @property
    def size(self) -> int:
        return self.images.shape[1]

    def digest(self) -> str:
        """SHA-256 of the faces and landmarks exactly as training sees them."""
        h = hashlib.sha256()
        for array in (self.images, self.landmarks):
            h.update(str((array.dtype, array.shape)).encode())
            h.update(np.ascontiguousarray(array).tobytes())
        return h.hexdigest()


def _resized(image: np.ndarray, landmarks: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    if image.shape[0] == size and image.shape[1] == size:
        return image, landmarks
    scale = np.array([size / image.shape[1], size / image.shape[0]], np.float32)
    interpolation = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_CUBIC
    return cv2.resize(image, (size, size), interpolation=interpolation), landmarks * scale


def load_faces(folder: Path, size: int, progress: bool = True) -> FaceSet:
    """The subject's faces from a FACES folder, resized to `size`; faces whose landmarks cannot be found are
    dropped. Raises SwapDataError for a missing folder or fewer than MIN_SRC_FACES faces."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SwapDataError(f"no FACES folder at {folder}")
    meta_path = folder / METADATA_FILE
    known: dict[str, np.ndarray] = {}
    if meta_path.is_file():
        try:
            entries = json.loads(meta_path.read_text())["images"]
            known = {e["file"]: np.asarray(e["landmarks"], np.float32) for e in entries}
        except (ValueError, KeyError, TypeError) as exc:
            raise SwapDataError(f"{meta_path} is not a face-set metadata file: {exc}") from None
    files = image_files(folder)
    if len(files) < MIN_SRC_FACES:
        raise SwapDataError(f"{folder} holds {len(files)} face images; the swap needs at least {MIN_SRC_FACES} "
                            "(the paper used 1,000: `avatar synth sample RUN --n 1000`)")
    images, landmarks = [], []
    for path in tqdm(files, desc="src faces", unit="face", disable=not progress):
        try:
            image = np.asarray(Image.open(path).convert("RGB"))
        except OSError as exc:
            raise SwapDataError(f"cannot read face image {path}: {exc}") from None
        points = known.get(path.name)
        if points is None or points.shape != (68, 2):       # not one of ours: find the face, align it
            face = find_face_in_small(image, embed=False)
            if face is None:
                continue
            aligned = align_face(image, face.landmarks, size)
            image, points = aligned.image, aligned.landmarks
        image, points = _resized(image, points, size)
        images.append(image)
        landmarks.append(points)
    if len(images) < MIN_SRC_FACES:
        raise SwapDataError(f"only {len(images)} of the {len(files)} images in {folder} show a face that can be "
                            f"landmarked; the swap needs at least {MIN_SRC_FACES}")
    return FaceSet(np.stack(images), np.stack(landmarks).astype(np.float32), str(folder))


@dataclass(frozen=True)
class VideoScan:
    """Faces found in each frame of a video: landmarks where exactly one face was found."""

    faces_found: np.ndarray   # int16 [N] faces detected per frame (only 1 is usable)
    landmarks: np.ndarray     # float32 [N, 68, 2] in frame pixels; NaN where the frame is unusable
    fps: float
    frame_size: tuple[int, int]   # (width, height)
    digest: str                   # sha256 of the video file

    @property
    def usable(self) -> np.ndarray:
        return self.faces_found == 1

    def counts(self) -> dict[str, int]:
        return {"frames": len(self.faces_found), "usable": int(self.usable.sum()),
                "no_face": int((self.faces_found == 0).sum()), "several_faces": int((self.faces_found > 1).sum())}

    def describe(self) -> str:
        c = self.counts()
        return (f"{c['usable']} of {c['frames']} frames usable ({c['no_face']} without a face, "
                f"{c['several_faces']} with several faces)")


def read_frames(video: Path, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """RGB uint8 [H, W, 3] frames of a video, in order."""
    for _, frame in _decoded(video, max_frames):
        yield np.ascontiguousarray(frame.to_ndarray(format="rgb24"))


def read_some_frames(video: Path, wanted: set[int], max_frames: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(index, RGB frame) of the `wanted` frames only; the others are decoded but never converted."""
    for index, frame in _decoded(video, max_frames):
        if index in wanted:
            yield index, np.ascontiguousarray(frame.to_ndarray(format="rgb24"))


def count_frames(video: Path, max_frames: int | None = None) -> int:
    """How many frames decode (at most `max_frames`), without converting any."""
    return sum(1 for _ in _decoded(video, max_frames))


def _open_video(video: Path) -> av.container.InputContainer:
    try:
        return av.open(str(video))
    except (av.error.FFmpegError, OSError) as exc:
        raise SwapDataError(f"cannot open video {video}: {exc}") from None


def _decoded(video: Path, max_frames: int | None) -> Iterator[tuple[int, av.VideoFrame]]:
    with _open_video(video) as container:
        if not container.streams.video:
            raise SwapDataError(f"{video} holds no video stream")
        try:
            for index, frame in enumerate(container.decode(video=0)):
                if max_frames is not None and index >= max_frames:
                    return
                yield index, frame
        except av.error.FFmpegError as exc:
            raise SwapDataError(f"cannot decode video {video}: {exc}") from None


def video_fps(video: Path) -> float:
    with _open_video(video) as container:
        rate = container.streams.video[0].average_rate if container.streams.video else None
    return float(rate) if rate else 25.0


def scan_video(video: Path, max_frames: int | None = None, progress: bool = True) -> VideoScan:
    """Detect faces in every frame (dlib HOG at the frame's own scale, one step up when none is found)."""
    video = Path(video)
    if not video.is_file():
        raise SwapDataError(f"no video at {video}")
    found, landmarks, size = [], [], (0, 0)
    bar = tqdm(read_frames(video, max_frames), desc=f"faces in {video.name}", unit="frame", disable=not progress)
    for frame in bar:
        size = (frame.shape[1], frame.shape[0])
        faces = find_faces(frame, upsample=0, embed=False)
        found.append(len(faces))
        landmarks.append(faces[0].landmarks if len(faces) == 1 else np.full((68, 2), np.nan, np.float32))
    if not found:
        raise SwapDataError(f"{video}: no video frames could be decoded")
    return VideoScan(np.array(found, np.int16), np.stack(landmarks).astype(np.float32), video_fps(video), size,
                     file_sha256(video))


def read_scan(cache: Path, digest: str, max_frames: int | None) -> VideoScan | None:
    """The scan kept in `cache` if it is of the video with this digest and frame limit, else None."""
    try:
        with np.load(cache, allow_pickle=False) as data:
            if str(data["digest"]) != digest or int(data["max_frames"]) != (max_frames or -1):
                return None
            return VideoScan(data["faces_found"], data["landmarks"], float(data["fps"]),
                             tuple(int(v) for v in data["frame_size"]), digest)
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None                                # missing or unreadable: scan again


def video_digest(video: Path) -> str:
    """The driving video's SHA-256 (what its scans and runs are keyed on); SwapDataError if there is none."""
    if not Path(video).is_file():
        raise SwapDataError(f"no video at {video}")
    return file_sha256(Path(video))


def cached_scan(video: Path, cache: Path, max_frames: int | None = None, progress: bool = True,
                also: tuple[Path, ...] = ()) -> VideoScan:
    """scan_video, kept in `cache` (.npz) and reused while the video file and frame limit are the same; a
    matching scan in one of the `also` files (e.g. the one training made) is reused as well."""
    video, cache = Path(video), Path(cache)
    if max_frames is not None and max_frames <= 0:
        raise SwapDataError(f"a frame limit (--frames, --dst-frames) must be positive, got {max_frames}")
    digest = video_digest(video)
    for path in (cache, *also):
        scan = read_scan(path, digest, max_frames)
        if scan is not None:
            return scan
    scan = scan_video(video, max_frames, progress)
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_npz_atomic(cache, faces_found=scan.faces_found, landmarks=scan.landmarks, fps=np.float64(scan.fps),
                     frame_size=np.array(scan.frame_size), digest=np.array(digest),
                     max_frames=np.int64(max_frames or -1))
    return scan


def check_usable(scan: VideoScan, video: Path) -> None:
    """Refuse a driving video in which fewer than half the frames show exactly one face."""
    counts = scan.counts()
    if counts["usable"] < MIN_USABLE_SHARE * counts["frames"]:
        raise SwapDataError(f"{Path(video).name}: only {scan.describe()}; a driving video needs exactly one "
                            f"face in at least {MIN_USABLE_SHARE:.0%} of its frames")


def driving_faces(video: Path, scan: VideoScan, size: int, max_frames: int | None = None) -> FaceSet:
    """The usable frames' faces, aligned at `size`."""
    images, landmarks = [], []
    for index, frame in enumerate(read_frames(video, max_frames)):
        if index < len(scan.usable) and scan.usable[index]:
            aligned = align_face(frame, scan.landmarks[index], size)
            images.append(aligned.image)
            landmarks.append(aligned.landmarks)
    if not images:
        raise SwapDataError(f"{Path(video).name}: no usable frame")
    return FaceSet(np.stack(images), np.stack(landmarks).astype(np.float32), str(video))
