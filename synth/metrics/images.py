"""Image sets the metrics read: a prepared dataset folder, or a folder of PNG/JPEG faces of any size."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image

from avatar.files import image_files, write_npz_atomic
from synth.dataset import INFO_FILE, load_images


class MetricsError(ValueError):
    """A metric cannot be computed from what was given."""


@dataclass(frozen=True)
class ImageSet:
    """Face images in a fixed order; `cache_dir` is where statistics of this set may be cached (datasets only)."""

    path: Path
    images: list[np.ndarray]          # each uint8 [H, W, 3] RGB
    names: list[str]
    cache_dir: Path | None = None

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, limit: int | None) -> "ImageSet":
        """At most `limit` images spread evenly over the set (all when limit is None)."""
        if limit is None or limit >= len(self.images):
            return self
        keep = np.linspace(0, len(self.images) - 1, limit).round().astype(int)
        return ImageSet(self.path, [self.images[i] for i in keep], [self.names[i] for i in keep], self.cache_dir)


def load_image_set(path: Path | str) -> ImageSet:
    """A dataset folder (dataset.json) or an image folder (sorted by name); raises MetricsError if empty."""
    path = Path(path)
    if (path / INFO_FILE).is_file():
        array = load_images(path)
        return ImageSet(path, list(array), [f"{i:05d}" for i in range(len(array))], cache_dir=path)
    if not path.is_dir():
        raise MetricsError(f"{path} is neither a dataset nor a folder of images")
    files = image_files(path)
    if not files and not (path / "metadata.json").is_file():    # a sampled set may hold no faces at all
        raise MetricsError(f"{path} holds no PNG or JPEG images")
    images = []
    for f in files:
        try:
            with PIL.Image.open(f) as im:
                images.append(np.asarray(im.convert("RGB")))
        except (OSError, PIL.UnidentifiedImageError) as e:
            raise MetricsError(f"{f}: not a readable image ({e})") from e
    return ImageSet(path, images, [f.name for f in files])


def cached(image_set: ImageSet, name: str, key: str, compute) -> dict[str, np.ndarray]:
    """`compute()` -> dict of arrays, cached atomically as stats-NAME.npz in the set's cache_dir under `key`.

    The key (method and options) and the number of images must match for the cache to be used.
    """
    if image_set.cache_dir is None:
        return compute()
    digest = hashlib.sha1(f"{key}|{len(image_set)}|{','.join(image_set.names)}".encode()).hexdigest()[:16]
    path = image_set.cache_dir / f"stats-{name}-{digest}.npz"
    if path.is_file():
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    arrays = compute()
    write_npz_atomic(path, **arrays)
    return arrays
