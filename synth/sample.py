"""`synth sample`: generate several times more faces than asked, drop non-faces and other people, optionally keep
only the share of them nearest to the subject, keep the most varied N of those (farthest-point sampling on the
landmark expression descriptor joined with the face embedding, equally weighted), write PNGs plus metadata.json.

Candidates are judged with the metrics' own face_recognition pipeline (small images enlarged to 256 px) against
the subject's reference embedding, the median embedding of the real dataset.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import PIL.Image
from tqdm import tqdm

from avatar.detect import TOLERANCE, embedding_distance, find_face_in_small
from avatar.driving import mouth_range
from avatar.files import write_json_atomic
from synth.expression import farthest_point_sampling, variety_descriptor

METADATA_FILE = "metadata.json"


class SampleError(ValueError):
    """Bad sampling options or an output folder in the way."""


@dataclass(frozen=True)
class SampleOptions:
    n: int = 1000                  # faces to keep
    oversample: float = 4.0        # candidates generated per face kept
    psi: float = 1.0               # truncation psi (1: none; the identity filter keeps the subject)
    seed: int = 0                  # candidate i uses z from seed + i
    batch: int = 32
    tolerance: float = TOLERANCE   # embedding distance up to which a face is the subject
    nearest: float = 1.0           # the share of the matching faces, nearest the subject, that variety picks from

    def __post_init__(self) -> None:
        if self.n < 1 or self.oversample < 1:
            raise SampleError(f"need n >= 1 and oversample >= 1, got n={self.n}, oversample={self.oversample}")
        if not 0 < self.nearest <= 1:
            raise SampleError(f"nearest is a share of the matching faces, above 0 and at most 1; got {self.nearest}")
        if not 0 <= self.psi <= 2:
            raise SampleError(f"truncation psi must be between 0 (the average face) and 1 (no truncation), or up "
                              f"to 2 to extrapolate; got {self.psi}")

    @property
    def candidates(self) -> int:
        return math.ceil(self.n * self.oversample)


@dataclass
class Selection:
    """The faces kept, in selection order, with where they came from and the per-reason counts."""

    images: list[np.ndarray] = field(default_factory=list)    # uint8 [H, W, 3]
    indices: list[int] = field(default_factory=list)          # candidate index
    landmarks: list[np.ndarray] = field(default_factory=list)  # float32 [68, 2]
    embeddings: list[np.ndarray] = field(default_factory=list)  # float64 [128]
    distances: list[float] = field(default_factory=list)       # to the subject's reference embedding
    counts: dict[str, int] = field(default_factory=dict)  # candidates, no_face, not_matching, matching, nearest, kept

    def mouth(self) -> dict[str, Any]:
        """How far the kept faces open their mouths (avatar.driving.mouth_range): all a swap learns it from."""
        return mouth_range(np.asarray(self.landmarks, np.float32))


def select_varied(candidates: Iterable[np.ndarray], reference: np.ndarray, n: int, tolerance: float = TOLERANCE,
                  total: int | None = None, progress: bool = True, nearest: float = 1.0) -> Selection:
    """Keep up to n candidate images [H, W, 3] that show the subject, chosen for variety of expression and look
    among the `nearest` share of them closest to the subject (never fewer than n of them, where there are).

    Variety spreads the faces' embeddings too, so it favours the ones farthest from the subject that still
    pass; a swap trained on them learns a face that is less the subject's. `nearest` below 1 trades some of
    that variety for likeness."""
    passed = Selection()
    counts = dict(candidates=0, no_face=0, not_matching=0, matching=0, kept=0)
    for index, image in enumerate(tqdm(candidates, total=total, desc="candidates", unit="img", disable=not progress)):
        counts["candidates"] += 1
        face = find_face_in_small(image)
        if face is None:
            counts["no_face"] += 1
            continue
        distance = float(embedding_distance(face.embedding, reference))
        if distance > tolerance:
            counts["not_matching"] += 1
            continue
        counts["matching"] += 1
        passed.images.append(image)
        passed.indices.append(index)
        passed.landmarks.append(face.landmarks)
        passed.embeddings.append(face.embedding)
        passed.distances.append(distance)
    pool = np.argsort(passed.distances, kind="stable")[:max(n, math.ceil(nearest * len(passed.distances)))]
    counts["nearest"] = len(pool)
    order = (pool[farthest_point_sampling(variety_descriptor(np.stack(passed.landmarks)[pool],
                                                             np.stack(passed.embeddings)[pool]), n)].tolist()
             if len(pool) else [])
    counts["kept"] = len(order)
    pick = lambda items: [items[i] for i in order]  # noqa: E731
    return Selection(pick(passed.images), pick(passed.indices), pick(passed.landmarks), pick(passed.embeddings),
                     pick(passed.distances), counts)


def write_faces(selection: Selection, out: Path, info: dict) -> None:
    """PNGs 00000.png... in selection order, then metadata.json (written last and atomically: it marks completion)."""
    out = Path(out)
    if (out / METADATA_FILE).exists():
        raise SampleError(f"{out} already holds a sampled face set; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for k, (image, index, lm, d) in enumerate(zip(selection.images, selection.indices, selection.landmarks,
                                                    selection.distances)):
        name = f"{k:05d}.png"
        PIL.Image.fromarray(image).save(out / name)
        entries.append({"file": name, "candidate": index, "distance": round(d, 4),
                        "landmarks": np.round(lm, 2).tolist()})
    write_json_atomic(out / METADATA_FILE, {**info, "count": len(entries), "counts": selection.counts,
                                            "mouth": selection.mouth(),
                                            "images": entries})


def gan_candidates(run_dir: Path, count: int, psi: float, seed: int, device: str = "cpu",
                   batch: int = 32) -> Iterator[np.ndarray]:
    """uint8 [H, W, 3] images from the run's EMA generator; candidate i is drawn from z = N(0, 1) seeded seed + i."""
    import torch

    from synth.train import load_generator      # training code is imported only when a GAN is sampled

    G, _ = load_generator(Path(run_dir), device)
    for start in range(0, count, batch):
        ids = range(start, min(count, start + batch))
        z = torch.from_numpy(np.stack([np.random.RandomState(seed + i).randn(G.z_dim) for i in ids])).float()
        with torch.no_grad():
            x = G(z.to(device), c=None, truncation_psi=psi)                              # [NCHW] ~[-1, 1]
        x = (x.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu().numpy()   # [NHWC]
        yield from x


def run_dataset(run_dir: Path) -> Path | None:
    """The dataset a training run was made from, if its options.json says."""
    from avatar.runs import run_options

    dataset = run_options(run_dir).get("dataset")
    return Path(dataset) if dataset else None


def image_grid(images: list[np.ndarray], cols: int = 8) -> np.ndarray:
    """Tile same-size uint8 images [H, W, 3] into one picture, row by row (for viewing a sample)."""
    if not images:
        raise SampleError("no images to tile")
    h, w, _ = images[0].shape
    rows = math.ceil(len(images) / cols)
    grid = np.zeros((rows * h, cols * w, 3), np.uint8)
    for k, image in enumerate(images):
        r, c = divmod(k, cols)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = image
    return grid


def subject_reference(real: Path, progress: bool = True) -> np.ndarray:
    """The subject's reference embedding: median face_recognition embedding of the real set (cached beside it)."""
    from synth.metrics.images import load_image_set
    from synth.metrics.recognition import reference_embedding, scan_set

    return reference_embedding(scan_set(load_image_set(real), progress))


def sample_run(run_dir: Path, out: Path, options: SampleOptions = SampleOptions(), real: Path | None = None,
               device: str = "cpu", progress: bool = True) -> Selection:
    """Sample a trained run: generate `options.candidates` faces, select `options.n`, write them to `out`."""
    from avatar.runs import check_device

    check_device(device)
    real = real or run_dataset(run_dir)
    if real is None:
        raise SampleError(f"{run_dir} does not name its dataset; pass --real DATASET")
    if (Path(out) / METADATA_FILE).exists():
        raise SampleError(f"{out} already holds a sampled face set; choose another --out")
    reference = subject_reference(real, progress)
    candidates = gan_candidates(run_dir, options.candidates, options.psi, options.seed, device, options.batch)
    selection = select_varied(candidates, reference, options.n, options.tolerance, options.candidates, progress,
                              options.nearest)
    write_faces(selection, out, {"run": str(run_dir), "real": str(real), "psi": options.psi, "seed": options.seed,
                                 "oversample": options.oversample, "nearest": options.nearest,
                                 "requested": options.n})
    return selection


def export_real_faces(dataset: Path, indices: Iterable[int], out: Path) -> None:
    """Chosen images of a prepared dataset written as a face set, in `synth sample`'s format, so that a swap can
    be trained on real frames for comparison with synthetic ones."""
    from synth.dataset import load_images, load_metadata

    images, meta = load_images(dataset), load_metadata(dataset)
    chosen = sorted(int(i) for i in indices)
    selection = Selection([images[i] for i in chosen], chosen,
                          [np.asarray(meta[i]["landmarks"], np.float32) for i in chosen], [], [0.0] * len(chosen),
                          {"real": len(chosen)})
    write_faces(selection, out, {"source": str(dataset), "real_frames": True})
