"""The shared idle stream (streaming/shared_idle.py): encoded once, in order, with keyframes where viewers join;
and what one session sends, its own frames and the stream's, decodes cleanly across every switch."""
from __future__ import annotations

import asyncio

import av
import numpy as np
import pytest
from aiortc.codecs.vpx import vp8_depayload
from av.packet import Packet

from avatar.types import FPS, SAMPLE_RATE, AudioClip, Speech, Utterance
from streaming.codecs import AvatarVp8Encoder
from streaming.guarded import GuardedPerformer
from streaming.shared_idle import KEEP, MAX_CATCH_UP, MIN_KEY_GAP, SharedIdle
from streaming.timeline import Timeline
from streaming.tracks import REJOIN_BACKOFF, TRANSITION_FRAMES, AvatarVideoTrack, EncoderFrames
from streaming_support import FakeClock, TonePerformer

SIZE = 128


class TexturedPerformer(TonePerformer):
    """TonePerformer whose frames differ in brightness and in a pattern, so a bad decode shows."""

    def render(self, index: int) -> np.ndarray:
        y, x = np.mgrid[0:SIZE, 0:SIZE]
        luma = (20 + (37 * int(index)) % 180 + 30 * np.sin((x + 3 * index) / 9.0) * np.cos(y / 13.0))
        return np.repeat(np.clip(luma, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def decode(decoder: av.CodecContext, data: bytes) -> np.ndarray:
    (frame,) = decoder.decode(av.Packet(data))
    return frame.to_ndarray(format="rgb24")


RENDERED = {i: TexturedPerformer().render(i) for i in range(120)}


def best_match(image: np.ndarray, performer: TexturedPerformer, indices: range) -> tuple[int, float]:
    """The driving frame whose render `image` is closest to, and the PSNR to it."""
    score, index = max((psnr(image, RENDERED[i]), i) for i in indices)
    return index, score


def test_the_stream_encodes_in_order_and_viewers_join_at_keyframes() -> None:
    clock = FakeClock()
    performer = TexturedPerformer()
    source = TexturedPerformer()
    stream = SharedIdle(source, EncoderFrames(), clock=lambda: clock.now)
    decoder = av.CodecContext.create("libvpx", "r")
    first = [stream.frame(n) for n in range(10)]
    assert first[0].keyframe and not any(f.keyframe for f in first[1:])     # one keyframe, at the start
    for entry in first:
        index, score = best_match(decode(decoder, entry.data), performer, range(10))
        assert index == entry.index == stream.index(entry.number) and score > 30
    # two viewers joining a moment apart share one keyframe; one more than MIN_KEY_GAP later gets its own
    join = stream.join_point(12)
    assert join == MIN_KEY_GAP and stream.schedule(join)
    assert stream.join_point(join - 1) == join and stream.schedule(join)
    assert not stream.schedule(join + 1)                 # keyframes at most one per MIN_KEY_GAP frames
    later = stream.join_point(join + 1)
    assert later == join + MIN_KEY_GAP and stream.schedule(later)
    joiner = av.CodecContext.create("libvpx", "r")   # a viewer that starts decoding at the joining keyframe
    for n in range(10, later + 3):
        entry = stream.frame(n)
        assert entry.keyframe == (n in (join, later))
        image = decode(decoder, entry.data)
        assert best_match(image, performer, range(10)) == (entry.index, pytest.approx(psnr(
            image, performer.render(entry.index))))
        if n >= join:
            index, score = best_match(decode(joiner, entry.data), performer, range(10))
            assert index == entry.index and score > 30
    # nobody asked for a while: the stream starts again with a keyframe; the frames skipped are not there
    gap = later + 3 + MAX_CATCH_UP + 5
    assert stream.frame(gap).keyframe
    assert stream.frame(gap - 2) is None
    assert stream.frame(gap + 1).keyframe is False
    planned = source._idle                                # idle frames the stream's performer has planned
    hour = gap + 3600 * FPS                               # an hour later, a viewer again: nothing planned between
    clock.now = hour / FPS
    join = stream.join_point(hour + FPS)
    assert stream.index(join) is not None and stream.schedule(join)
    assert source._idle - planned <= 3 * FPS
    assert stream.index(hour - 1) is None and stream.index(gap) is None
    # a viewer far behind asks for a frame that was never planned (the plan moved on): gone, nothing breaks
    assert stream.frame(hour - 10) is None
    assert stream.frame(join).keyframe and not stream.frame(join + 1).keyframe
    # joins nobody arrives at leave nothing behind: an hour of them
    for second in range(3600):
        clock.now = (join + FPS * (second + 2)) / FPS
        stream.schedule(stream.join_point(int(clock.now * FPS) + FPS))
        stream.index(int(clock.now * FPS) + FPS)
    assert len(stream._keys) <= 4 and len(stream._plan) <= 4 * KEEP


def reply(first_frame: int, frames: int) -> Utterance:
    samples = np.ones(frames * SAMPLE_RATE // FPS, np.int16)
    return Utterance(Speech("x", AudioClip(samples), ()), np.zeros((frames, 3), np.float32),
                     np.arange(first_frame, first_frame + frames))


@pytest.mark.parametrize("encoded_by", ["track", "sender"])
def test_a_session_sends_its_own_frames_and_the_streams_and_every_switch_decodes_cleanly(encoded_by: str) -> None:
    """The service's tracks encode their own frames (`encode_with`); without an encoder a track hands them to
    the sender (aiortc) to encode, as any track."""
    clock = FakeClock()
    timeline = Timeline(clock.elapsed)
    stream = SharedIdle(TexturedPerformer(), EncoderFrames(), clock=lambda: clock.now)
    guarded = GuardedPerformer(TexturedPerformer())
    track = AvatarVideoTrack(clock, timeline, guarded, EncoderFrames(), shared=stream)
    pli = [False]                                         # the viewer asks for a keyframe
    track.may_share = lambda: not pli[0]
    encoder, decoder = AvatarVp8Encoder(), av.CodecContext.create("libvpx", "r")
    if encoded_by == "track":
        def take_request() -> bool:                       # as codecs.take_keyframe_request: asked, and taken
            asked, pli[0] = pli[0], False
            return asked
        track.encode_with(encoder, take_request)
    reference = TexturedPerformer()
    sent: list[tuple[bool, bool, int, float]] = []      # (from the stream, keyframe, driving frame, PSNR)

    async def take(count: int) -> None:
        for _ in range(count):
            shared_before = track.frames_shared
            frame = await track.recv()
            if isinstance(frame, Packet):
                payloads, _ = encoder.pack(frame)
            else:
                assert encoded_by == "sender"
                payloads, _ = encoder.encode(frame)
            data = b"".join(vp8_depayload(p) for p in payloads)
            index, score = best_match(decode(decoder, data), reference, range(120))
            sent.append((track.frames_shared > shared_before, not data[0] & 1, index, score))

    async def scenario() -> None:
        await take(3 * FPS)                               # listening: steers into the stream and joins it
        timeline.place(reply(100, 20))                    # a reply: leaves the stream for its own frames
        await take(4 * FPS)                               # ... and joins again after it
        pli[0] = True                                     # a PLI: a keyframe of its own at once
        await take(2)
        pli[0] = False
        await take(5 * FPS - 1)                           # and the stream again, after a pause
        track.stop()
    asyncio.run(scenario())

    shared = [s for s, _, _, _ in sent]
    assert all(score > 30 for _, _, _, score in sent), [round(s) for *_, s in sent]   # no frame decodes badly
    switches = [k for k in range(1, len(sent)) if shared[k] != shared[k - 1]]
    assert len(switches) == 5 and shared[switches[0]]      # in, out for the reply, in, out for the PLI, in
    for k in switches:
        assert sent[k][1]                                 # each switch starts with a keyframe
    assert sum(s[1] for s in sent) == 6                   # and there are no others (the first frame is one)
    for k in switches[::2]:                               # steered onto the stream: the next frame of the cycle
        assert (sent[k][2] - sent[k - 1][2]) % 10 == 1, (sent[k - 1], sent[k])
    pli_at = 7 * FPS                                      # the PLI came while frame 175 was due
    assert switches[3] in (pli_at, pli_at + 1)            # that frame or the next (decided ahead) is its own key
    assert switches[4] - switches[3] >= REJOIN_BACKOFF    # and the stream only after a while
    replied = [s[2] for s in sent if s[2] >= 100]
    assert replied == list(range(100, 120))               # the reply's frames, all of them, in order
    assert switches[0] >= TRANSITION_FRAMES               # it steered its own frames there first
    assert track.frames_shared == sum(shared) > 2 * FPS
