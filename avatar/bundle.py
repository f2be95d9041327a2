"""The avatar bundle: one custom avatar as flat files in a folder, or the same files in one `.avatar` zip.

    manifest.json   what the avatar is: name, consent, sources, build settings, analysis, quality, and per file
                    its size and sha256 (written last: a bundle without it is incomplete)
    frames.mp4      the driving frames, H.264 yuv420p
    clip.npz        per frame: landmarks [N, 68, 2], mouth [N, 3], pose [N, 3], eyes [N]; no object arrays
    *.png           pictures (e.g. a preview), each signed with a C2PA manifest

Reading executes nothing from the bundle (JSON, numpy without pickle, H.264) and needs no torch. Every file the
manifest lists is checked for size and hash before anything is used.
"""
from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import shutil
import uuid
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from avatar.bundle_describe import describe  # noqa: F401  (`avatar inspect` and the tests call it from here)
from avatar.driving import ClipError, DrivingClip
from avatar.files import file_sha256, write_json_atomic

FORMAT = "avatar-bundle"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
FRAMES_FILE = "frames.mp4"
CLIP_FILE = "clip.npz"
BUNDLE_SUFFIX = ".avatar"
CLIP_ARRAYS = ("landmarks", "mouth", "pose", "eyes")     # DrivingClip's per-frame arrays, beside the frames
RESERVED_KEYS = ("format", "version", "files", "frames")  # manifest keys that write_bundle sets
CONSENT_FIELDS = ("role", "name", "file", "sha256", "date")
BLOCK = 1 << 20


class BundleError(ValueError):
    """An avatar bundle that cannot be written, or read and trusted."""


@dataclass(frozen=True)
class Bundle:
    """An opened bundle whose files were all verified against its manifest."""

    path: Path          # the folder or the .avatar file
    manifest: dict

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def consent(self) -> tuple[str, ...]:
        return consent_lines(self.manifest)


def consent_lines(manifest: dict) -> tuple[str, ...]:
    """The consent records in words, e.g. "subject: Jane Doe, consent statement consent.txt (sha256 1234abcd…),
    2026-12-01"; () when the manifest records none."""
    records = manifest.get("consent") or []
    if not isinstance(records, list):
        raise BundleError(f"manifest 'consent' must be a list of records, got {type(records).__name__}")
    lines = []
    for i, record in enumerate(records):
        missing = [key for key in CONSENT_FIELDS
                   if not isinstance(record, dict) or not isinstance(record.get(key), str)]
        if missing:
            raise BundleError(f"manifest consent record {i} lacks {', '.join(missing)} (each must be text)")
        lines.append(f"{record['role']}: {record['name']}, consent statement {record['file']} "
                     f"(sha256 {record['sha256'][:8]}…), {record['date']}")
    return tuple(lines)


def is_bundle(path: str | Path) -> bool:
    """A folder holding manifest.json, or a file ending in .avatar."""
    path = Path(path)
    if path.is_dir():
        return (path / MANIFEST_FILE).is_file()
    return path.is_file() and path.suffix.lower() == BUNDLE_SUFFIX


def write_bundle(out: Path, clip: DrivingClip, manifest: dict, images: dict[str, np.ndarray] | None = None,
                 fps: float = 25.0, crf: int = 16) -> Path:
    """Write `clip`, `images` (uint8 RGB, signed PNGs) and `manifest` as a bundle at `out`: a folder, or a zip
    when `out` ends in .avatar. Everything is written under a temporary sibling name first, then renamed."""
    from avatar.provenance import ContentInfo, sign_file

    out = Path(out)
    images = images or {}
    if out.exists():
        raise BundleError(f"{out} already exists; an avatar bundle is never overwritten")
    manifest = _plain_manifest(manifest, out)
    for key in RESERVED_KEYS:
        if key in manifest:
            raise BundleError(f"{out}: manifest must not set {key!r}; write_bundle records it")
    for file, image in images.items():
        _check_name(file, out)
        if not file.lower().endswith(".png") or file in (MANIFEST_FILE, FRAMES_FILE, CLIP_FILE):
            raise BundleError(f"{out}: image name {file!r} must be a .png file name")
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise BundleError(f"{out}: image {file} must be uint8 [H, W, 3] RGB, got {image.dtype} {image.shape}")
    if not fps > 0:
        raise BundleError(f"{out}: fps must be positive, got {fps}")
    try:
        consent = consent_lines(manifest)
    except BundleError as exc:
        raise BundleError(f"{out}: {exc}") from None

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.partial")
    staging.mkdir()
    try:
        width, height = _write_frames(staging / FRAMES_FILE, clip.frames, fps, crf)
        with open(staging / CLIP_FILE, "wb") as f:
            np.savez(f, **{name: np.ascontiguousarray(getattr(clip, name), np.float32) for name in CLIP_ARRAYS})
        for file, image in images.items():
            _write_png(staging / file, image)
            sign_file(staging / file, ContentInfo(title=f"{manifest['name']}: {file}",
                                                  avatar_name=manifest["name"], consent=consent))
        manifest.setdefault("created", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
        manifest.setdefault("software", ContentInfo(title="").software)
        manifest.update(format=FORMAT, version=FORMAT_VERSION,
                        frames={"count": len(clip), "fps": float(fps), "width": width, "height": height})
        files = sorted(p.name for p in staging.iterdir())
        for file in files:
            _fsync(staging / file)
        manifest["files"] = {file: {"sha256": file_sha256(staging / file), "bytes": (staging / file).stat().st_size}
                             for file in files}
        write_json_atomic(staging / MANIFEST_FILE, manifest)
        if out.suffix.lower() == BUNDLE_SUFFIX:
            _zip_into_place(staging, files + [MANIFEST_FILE], out)
        else:
            if out.exists():
                raise BundleError(f"{out} appeared while the bundle was written; not overwritten")
            os.rename(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def open_bundle(path: str | Path) -> Bundle:
    """Read the manifest and verify the size and sha256 of every file it lists."""
    path = Path(path)
    if path.is_dir():
        manifest_file = path / MANIFEST_FILE
        if not manifest_file.is_file():
            raise BundleError(f"{path}: {MANIFEST_FILE} is missing; not an avatar bundle (or an incomplete one)")
        manifest = _parse_manifest(path, manifest_file.read_bytes())
        for file, entry in manifest["files"].items():
            member = path / file
            if not member.is_file():
                raise BundleError(f"{path}: {file} is missing")
            _check_file(path, file, entry, member.stat().st_size, lambda: file_sha256(member))
    elif path.is_file():
        try:
            with zipfile.ZipFile(path) as zf:
                members = {}
                for info in zf.infolist():
                    _check_name(info.filename, path)
                    if info.filename in members:
                        raise BundleError(f"{path}: the zip holds {info.filename} twice")
                    members[info.filename] = info
                if MANIFEST_FILE not in members:
                    raise BundleError(f"{path}: {MANIFEST_FILE} is missing; not an avatar bundle")
                manifest = _parse_manifest(path, zf.read(MANIFEST_FILE))
                for file, entry in manifest["files"].items():
                    if file not in members:
                        raise BundleError(f"{path}: {file} is missing")
                    _check_file(path, file, entry, members[file].file_size, lambda: _zip_sha256(zf, file))
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError) as exc:
            raise BundleError(f"{path}: not a readable .avatar zip ({exc.__class__.__name__}: {exc})") from None
    else:
        raise BundleError(f"no avatar bundle at {path}")
    return Bundle(path, manifest)


def load_clip(bundle: Bundle) -> DrivingClip:
    """Decode the bundle's frames and read its per-frame arrays (numpy without pickles) into a driving clip."""
    with _member(bundle.path, CLIP_FILE) as f:
        raw = f.read()
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as data:
            arrays = {name: data[name] for name in CLIP_ARRAYS}
    except KeyError as exc:
        raise BundleError(f"{bundle.path}: {CLIP_FILE} lacks an array ({exc})") from None
    except (ValueError, TypeError, AttributeError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise BundleError(f"{bundle.path}: {CLIP_FILE} cannot be read ({exc.__class__.__name__}: {exc})") from None
    for name, array in arrays.items():
        if array.dtype != np.float32:
            raise BundleError(f"{bundle.path}: {CLIP_FILE} {name} must be float32, got {array.dtype}")
    n = len(arrays["landmarks"])
    with _member(bundle.path, FRAMES_FILE) as f:
        frames = _read_frames(bundle.path, f, n)
    try:
        return DrivingClip(frames=frames, **arrays, source=f"bundle:{bundle.name}")
    except ClipError as exc:
        raise BundleError(f"{bundle.path}: {CLIP_FILE} does not fit {FRAMES_FILE}: {exc}") from None


def load_bundle(path: str | Path) -> tuple[Bundle, DrivingClip]:
    """Open and verify a bundle, then load its clip."""
    bundle = open_bundle(path)
    return bundle, load_clip(bundle)


def _plain_manifest(manifest: dict, out: Path) -> dict:
    """A JSON-ready copy (numpy numbers become Python numbers, paths text) with a name."""
    def plain(value: Any) -> Any:
        if isinstance(value, (np.generic, np.ndarray)):
            return value.tolist()
        if isinstance(value, Path):
            return str(value)
        raise TypeError(f"{type(value).__name__} is not JSON")

    try:
        manifest = json.loads(json.dumps(manifest, default=plain))
    except (TypeError, ValueError) as exc:
        raise BundleError(f"{out}: the manifest cannot be written as JSON: {exc}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("name"), str) or not manifest["name"].strip():
        raise BundleError(f"{out}: the manifest needs a 'name' (non-empty text)")
    return manifest


def _parse_manifest(path: Path, raw: bytes) -> dict:
    """The manifest, checked for format, version, name, consent and a flat list of files with sizes and hashes."""
    try:
        manifest = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"{path}: {MANIFEST_FILE} is not JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{path}: {MANIFEST_FILE} is not a JSON object")
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{path}: not an avatar bundle ({MANIFEST_FILE} format is {manifest.get('format')!r})")
    if manifest.get("version") != FORMAT_VERSION:
        raise BundleError(f"{path}: format version {manifest.get('version')}, this software reads {FORMAT_VERSION}")
    if not isinstance(manifest.get("name"), str) or not manifest["name"].strip():
        raise BundleError(f"{path}: {MANIFEST_FILE} has no 'name'")
    try:
        consent_lines(manifest)
    except BundleError as exc:
        raise BundleError(f"{path}: {exc}") from None
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BundleError(f"{path}: {MANIFEST_FILE} has no 'files' list")
    for file in (FRAMES_FILE, CLIP_FILE):
        if file not in files:
            raise BundleError(f"{path}: {MANIFEST_FILE} does not list {file}")
    for file, entry in files.items():
        _check_name(file, path)
        if (file == MANIFEST_FILE or not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str)
                or not isinstance(entry.get("bytes"), int)):
            raise BundleError(f"{path}: {MANIFEST_FILE} entry for {file} needs 'sha256' and 'bytes'")
    return manifest


def _check_name(name: str, path: Path) -> None:
    """Bundle files are flat: no folders, no way out of the bundle."""
    if not name or name == "." or "/" in name or "\\" in name or ".." in name or "\0" in name:
        raise BundleError(f"{path}: refusing file name {name!r} (bundle files are flat names)")


def _check_file(path: Path, file: str, entry: dict, size: int, sha256: Callable[[], str]) -> None:
    if size != entry["bytes"]:
        raise BundleError(f"{path}: {file} is truncated or grown ({size} bytes, manifest says {entry['bytes']})")
    actual = sha256()
    if actual != entry["sha256"]:
        raise BundleError(f"{path}: {file} was altered (sha256 {actual}, manifest says {entry['sha256']})")


def _zip_sha256(zf: zipfile.ZipFile, name: str) -> str:
    h = hashlib.sha256()
    with zf.open(name) as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            h.update(block)
    return h.hexdigest()


@contextmanager
def _member(path: Path, name: str) -> Iterator[BinaryIO]:
    """One file of a bundle folder or zip, opened for reading."""
    if path.is_dir():
        with open(path / name, "rb") as f:
            yield f
    else:
        with zipfile.ZipFile(path) as zf, zf.open(name) as f:
            yield f


def _write_frames(path: Path, frames: np.ndarray, fps: float, crf: int) -> tuple[int, int]:
    """Encode RGB frames [N, H, W, 3] as H.264; an odd side loses its last row or column. Returns (W, H)."""
    import av

    from avatar.mp4 import add_h264, open_mp4

    h, w = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
    with open_mp4(path, "AI-generated avatar frames (face swap)") as container:
        stream = add_h264(container, fps, w, h, crf, preset="medium")
        for i, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:h, :w]), format="rgb24")
            vf.pts = i
            container.mux(stream.encode(vf))
        container.mux(stream.encode(None))
    return w, h


def _read_frames(path: Path, source: BinaryIO, n: int) -> np.ndarray:
    """Decode exactly `n` RGB frames from an mp4 stream: uint8 [n, H, W, 3]."""
    import av

    frames = None
    count = 0
    try:
        with av.open(source, "r") as container:
            for frame in container.decode(video=0):
                rgb = frame.to_ndarray(format="rgb24")
                if frames is None:
                    frames = np.empty((n, *rgb.shape), np.uint8)
                if count < n:
                    frames[count] = rgb
                count += 1
    except (av.error.FFmpegError, ValueError) as exc:
        raise BundleError(f"{path}: {FRAMES_FILE} cannot be decoded ({exc})") from None
    if frames is None or count != n:
        raise BundleError(f"{path}: {FRAMES_FILE} holds {count} frames, {CLIP_FILE} has {n}")
    return frames


def _write_png(path: Path, image: np.ndarray) -> None:
    import cv2

    ok, png = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]))
    if not ok:
        raise BundleError(f"cannot encode {path.name} as PNG")
    path.write_bytes(png.tobytes())


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _zip_into_place(staging: Path, files: list[str], out: Path) -> None:
    """Store `files` (flat, uncompressed, the manifest last) in a zip beside `out`, then link it into place,
    which fails rather than overwrite a file that appeared meanwhile."""
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
            for file in files:
                zf.write(staging / file, arcname=file)
        _fsync(tmp)
        try:
            os.link(tmp, out)
        except FileExistsError:
            raise BundleError(f"{out} appeared while the bundle was written; not overwritten") from None
        except OSError:                 # a file system without hard links: check, then rename
            if out.exists():
                raise BundleError(f"{out} appeared while the bundle was written; not overwritten") from None
            os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
