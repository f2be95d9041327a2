"""Frames converted for the encoder once per driving frame still show what was rendered."""
from __future__ import annotations

import numpy as np

from streaming.tracks import EncoderFrames


def test_converted_frames_match_the_render_and_are_reused() -> None:
    rng = np.random.default_rng(0)
    pictures = {i: np.repeat(np.repeat(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), 8, 0), 8, 1)
                for i in range(3)}
    calls: list[int] = []

    def render(index: int) -> np.ndarray:
        calls.append(index)
        return pictures[index]

    frames = EncoderFrames()
    for index in (0, 1, 0, 2, 1, 0):
        frame = frames.frame(index, render)
        assert frame.format.name == "yuv420p" and (frame.width, frame.height) == (128, 128)
        back = frame.to_ndarray(format="rgb24").astype(int)
        assert np.abs(back - pictures[index]).mean() < 6           # same picture, up to chroma subsampling
    assert calls == [0, 1, 2]                                       # each driving frame converted once

    small = EncoderFrames(max_bytes=128 * 128 * 3 // 2)                 # room for one converted frame
    calls.clear()
    for index in (0, 1, 0, 1):
        small.frame(index, render)
    assert calls == [0, 1, 1]                                       # the second one is not kept
