"""The dataset format: shards round-trip, commits resume, foreign or incomplete folders are refused."""
from __future__ import annotations

import json

import numpy as np
import pytest

from synth.dataset import DatasetError, DatasetWriter, load_images, load_metadata, read_info


def _image(value: int, size: int = 8) -> np.ndarray:
    return np.full((size, size, 3), value, np.uint8)


def test_round_trip_over_several_shards(tmp_path):
    writer = DatasetWriter(tmp_path / "ds", 8, {"opt": 1}, shard_size=3)
    for i in range(7):
        writer.add(_image(i), {"source": "v.mp4", "frame": i})
    info = writer.finish(["v.mp4"], {"kept": 7}, {"done": True})

    assert sorted(p.name for p in (tmp_path / "ds").glob("shard-*.npy")) == [
        "shard-00000.npy", "shard-00001.npy", "shard-00002.npy"]
    images = load_images(tmp_path / "ds")
    assert images.shape == (7, 8, 8, 3) and images.dtype == np.uint8
    assert images[:, 0, 0, 0].tolist() == list(range(7))
    assert [m["frame"] for m in load_metadata(tmp_path / "ds")] == list(range(7))
    raw = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert raw == {"size": 8, "count": 7, "sources": ["v.mp4"], "counts": {"kept": 7}, "version": 1}
    assert info == read_info(tmp_path / "ds")
    assert not list((tmp_path / "ds").glob("*.tmp"))


def test_single_shard_loads_as_memory_map(tmp_path):
    writer = DatasetWriter(tmp_path / "ds", 8, {}, shard_size=16)
    writer.add(_image(3), {})
    writer.finish([], {}, {})
    assert isinstance(load_images(tmp_path / "ds"), np.memmap)


def test_resume_keeps_committed_shards_and_drops_later_ones(tmp_path):
    path = tmp_path / "ds"
    writer = DatasetWriter(path, 8, {"opt": 1}, shard_size=2)
    for i in range(4):
        writer.add(_image(i), {"frame": i})
    writer.commit({"next_frame": 4})
    writer.add(_image(4), {"frame": 4})           # never committed: lost on a crash
    # A crash between writing a shard and recording it leaves an orphan shard behind.
    (path / "shard-00002.npy").write_bytes((path / "shard-00000.npy").read_bytes())

    resumed = DatasetWriter(path, 8, {"opt": 1}, shard_size=2)
    assert resumed.progress == {"next_frame": 4}
    assert resumed.count == 4 and not resumed.complete
    assert not (path / "shard-00002.npy").exists()
    resumed.add(_image(9), {"frame": 9})
    resumed.finish([], {}, {})
    assert load_images(path)[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 9]


def test_other_options_are_refused(tmp_path):
    DatasetWriter(tmp_path / "ds", 8, {"every": 1}).commit({})
    with pytest.raises(DatasetError, match=r"other options \(every: 1 there, 2 here\)"):
        DatasetWriter(tmp_path / "ds", 8, {"every": 2})


def test_incomplete_dataset_cannot_be_loaded(tmp_path):
    writer = DatasetWriter(tmp_path / "ds", 8, {})
    writer.add(_image(1), {})
    writer.commit({})
    with pytest.raises(DatasetError, match="not a complete dataset"):
        load_images(tmp_path / "ds")


def test_wrong_image_shape_is_refused(tmp_path):
    writer = DatasetWriter(tmp_path / "ds", 8, {})
    with pytest.raises(DatasetError, match="uint8"):
        writer.add(np.zeros((8, 8, 3), np.float32), {})
    with pytest.raises(DatasetError, match=r"\[8, 8, 3\]"):
        writer.add(_image(1, size=16), {})
