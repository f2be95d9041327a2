"""Helpers for the swap tests (imported by name: pytest puts this folder on sys.path)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from build_support import write_video  # noqa: F401  (the one video writer of the tests)


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
