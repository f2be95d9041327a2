"""Writing mp4 files that say what they are: every video the project writes is opened here.

`open_mp4` puts the machine-readable AI notice into the container's metadata (`comment`, `description`,
`ai_generated=true`); `add_h264` adds the one kind of video stream the project writes (libx264, yuv420p).
The visible label is drawn on the frames by the renderer (`avatar.render.draw_label`).
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av

AI_NOTICE = ("AI-generated: the face and voice in this video are synthetic, made by avatar-service; "
             "they are not a recording of a real person speaking.")


def open_mp4(path: Path, title: str) -> av.container.OutputContainer:
    """An mp4 container open for writing (moov first, metadata kept), carrying the AI notice."""
    container = av.open(str(path), "w", format="mp4", options={"movflags": "+use_metadata_tags+faststart"})
    container.metadata.update({"title": title, "comment": AI_NOTICE, "description": AI_NOTICE,
                               "ai_generated": "true", "encoder_app": "avatar-service"})
    return container


def add_h264(container: av.container.OutputContainer, rate: float | Fraction, width: int, height: int,
             crf: int, preset: str = "veryfast", threads: int = 0) -> av.video.stream.VideoStream:
    """A libx264 yuv420p stream of `width` x `height` (both even) at `rate` frames per second, encoded with
    `threads` threads (0: x264 chooses)."""
    stream = container.add_stream("libx264", rate=Fraction(rate).limit_denominator(1001))
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.options = {"preset": preset, "crf": str(crf)}
    stream.codec_context.thread_count = threads
    return stream
