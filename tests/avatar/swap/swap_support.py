"""Helpers for the swap tests (imported by name: pytest puts this folder on sys.path)."""
from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
from PIL import Image


def write_video(path: Path, frames: list[np.ndarray], fps: int = 25) -> Path:
    """An H.264 mp4 of RGB frames (even sides)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def write_faces(folder: Path, images: list[np.ndarray], landmarks: list[np.ndarray]) -> Path:
    """A FACES folder in `avatar synth sample`'s format: PNGs plus metadata.json with landmarks."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for k, (image, points) in enumerate(zip(images, landmarks)):
        name = f"{k:05d}.png"
        Image.fromarray(image).save(folder / name)
        entries.append({"file": name, "landmarks": np.round(points, 2).tolist()})
    (folder / "metadata.json").write_text(json.dumps({"count": len(entries), "images": entries}))
    return folder
