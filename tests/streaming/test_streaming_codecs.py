"""The service's own encoders (streaming/codecs.py): what they send decodes to what went in.

Opus: sound in 10 ms packets, then 20 ms ones, from one encoder; settled silence in 20 ms DTX packets (the
TOC byte of the very frame the encoder would have made, no data), one every 400 ms while the track pauses;
speech after a reused silence comes through as well as when every frame is encoded. VP8: keyframes when
asked, a new codec only when the bitrate falls by a quarter or doubles, and frames that decode close to the
source.
"""
from __future__ import annotations

import fractions

import asyncio
import types

import av
import numpy as np
import pytest
from aiortc.codecs.vpx import vp8_depayload

from avatar.types import SAMPLE_RATE, SAMPLES_PER_FRAME, AudioClip, Speech, Utterance
from streaming.timeline import Timeline
from streaming.tracks import DTX_KEEPALIVE, SOUND_START_PACKETS, AvatarAudioTrack
from streaming_support import FakeClock
from streaming.codecs import (OPUS_FRAME, SILENCE_PACKET, SILENT_FRAMES_TO_SETTLE, SOUND_PACKET, AvatarVp8Encoder,
                              PLI_FLAG, LibOpus, OpusPackets, keyframe_asked, take_keyframe_request)

CHUNK = SAMPLE_RATE // 50


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """A voiced tone with a wandering pitch and some breath noise, int16."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pitch = 140 + 30 * np.sin(2 * np.pi * 1.5 * t)
    voice = np.sin(2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE) + 0.4 * np.sin(4 * np.pi * np.cumsum(pitch) / SAMPLE_RATE)
    return (voice * 6000 + rng.normal(0, 300, t.size)).astype(np.int16)


def decode_opus(packets: list[av.Packet]) -> np.ndarray:
    decoder = av.CodecContext.create("libopus", "r")
    decoder.sample_rate = SAMPLE_RATE
    decoder.layout = "mono"
    out = [frame.to_ndarray().reshape(-1) for packet in packets for frame in decoder.decode(av.Packet(bytes(packet)))]
    return np.concatenate(out).astype(np.float32)


DELAY = 120                     # libopus' look-ahead in its low-delay (CELT) mode: 2.5 ms, in samples


def correlation_after_delay(audio: np.ndarray, decoded: np.ndarray, start: int, size: int) -> float:
    return float(np.corrcoef(audio[start:start + size], decoded[start + DELAY:start + DELAY + size])[0, 1])


def stream(opus: OpusPackets, audio: np.ndarray, unencoded: list[int] | None = None) -> list[av.Packet]:
    """Packets as the audio track makes them: 10 ms of sound, or 20 ms of silence once it has settled (the
    indices of packets made without the encoder go to `unencoded`)."""
    packets, n = [], 0
    while n < audio.size:
        window = audio[n:n + SILENCE_PACKET]
        quiet = opus.silence_settled and len(window) == SILENCE_PACKET and not window.any()
        samples = window if quiet else audio[n:n + OPUS_FRAME]
        encoded = opus.encoded
        packets.append(opus.packet(samples, n))
        if unencoded is not None and opus.encoded == encoded:
            unencoded.append(len(packets) - 1)
        n += len(samples)
    return packets


def test_opus_reuses_the_settled_silence_frame_and_speech_after_it_decodes_as_well() -> None:
    speech = speechlike(1.0)
    silence = np.zeros(2 * SAMPLE_RATE, np.int16)
    audio = np.concatenate([silence[:CHUNK * 5], speech, silence, speech, silence[:CHUNK * 20]])
    opus, unencoded = OpusPackets(), []
    packets = stream(opus, audio, unencoded)
    starts = [p.pts for p in packets]
    sizes = np.diff(starts + [audio.size])
    assert starts[0] == 0 and set(sizes) == {OPUS_FRAME, SILENCE_PACKET}           # stamped in samples
    assert all(p.time_base == fractions.Fraction(1, SAMPLE_RATE) for p in packets)
    reused = [k for k, size in enumerate(sizes) if size == SILENCE_PACKET]
    # sound always goes in 10 ms packets; each silent run after sound is reused to its end once settled
    assert not any(audio[starts[k]:starts[k] + sizes[k]].any() for k in unencoded)
    assert set(reused) <= set(unencoded) and opus.encoded == len(packets) - len(unencoded)
    assert len(set(unencoded) - set(reused)) <= 2       # at most a last 10 ms of a silent run, reused alone
    runs = [((5 + 50) * CHUNK, 2 * SAMPLE_RATE), ((5 + 50 + 100 + 50) * CHUNK, 20 * CHUNK)]   # (start, length)
    counted = 0
    for r, length in runs:
        in_run = [k for k in reused if r <= starts[k] < r + length]
        assert in_run, f"the silence from sample {r} never settled"
        settled_at = starts[in_run[0]]
        assert SILENT_FRAMES_TO_SETTLE * OPUS_FRAME <= settled_at - r <= (SILENT_FRAMES_TO_SETTLE + 40) * OPUS_FRAME
        assert [starts[k] for k in in_run] == list(range(settled_at, r + length - SILENCE_PACKET + 1, SILENCE_PACKET))
        assert (r + length - settled_at) % SILENCE_PACKET == 0 or (r + length - OPUS_FRAME) in {starts[k] for k in unencoded}
        counted += len(in_run)
    assert counted == len(reused)                      # none in the 50 ms before the first sound: too short

    class EncodeAll(OpusPackets):      # the same audio with every 10 ms frame through the encoder
        silence_settled = False

        def packet(self, samples, n):
            self._silence = None
            return super().packet(samples, n)
    reference = stream(EncodeAll(), audio)
    by_start = {p.pts: bytes(p) for p in reference}
    for k in unencoded:                # DTX: the encoder's TOC byte for its settled silent frame, without data
        one = by_start[starts[k]]
        assert bytes(packets[k]) == bytes([one[0] | (1 if k in reused else 0)]) and not one[0] & 0b11
        if k in reused:
            assert by_start[starts[k] + OPUS_FRAME] == one
    assert [bytes(p) for p in packets[:reused[0]]] == [bytes(p) for p in reference[:reused[0]]]

    ours, encoded_all = decode_opus(packets), decode_opus(reference)
    assert ours.size == encoded_all.size == audio.size
    after_silence = (5 + 50 + 100) * CHUNK
    settled = starts[min(unencoded)]
    assert np.array_equal(ours[:settled], encoded_all[:settled])                 # the same until DTX
    assert np.abs(ours[settled:after_silence]).max() < 50                        # and DTX decodes to silence
    heard = correlation_after_delay(audio, ours, after_silence, speech.size)
    assert heard > 0.75 and heard > correlation_after_delay(audio, encoded_all, after_silence, speech.size) - 0.03
    onset = correlation_after_delay(audio, ours, after_silence, 2 * CHUNK)      # its first 40 ms
    assert onset > 0.75
    quiet = ours[(5 + 50) * CHUNK + DELAY + 2 * CHUNK:after_silence]        # after the encoder's 40 ms of ringing
    assert np.abs(quiet).max() < 50                                              # silence stays silent


def test_opus_refuses_a_packet_of_another_length() -> None:
    opus = OpusPackets()
    for size in (3 * OPUS_FRAME, OPUS_FRAME // 2, 0):
        with pytest.raises(ValueError, match="480 or 960 samples"):
            opus.packet(np.zeros(size, np.int16), 0)


def test_the_direct_encoder_makes_the_packets_of_pyav_s_libopus_with_the_same_settings() -> None:
    """LibOpus calls the libopus that PyAV's wheel ships; with PyAV's encoder set as before (restricted low
    delay, constrained VBR, 48 kbit/s, 10 ms frames) the two make the same bytes."""
    audio = np.concatenate([speechlike(0.4), np.zeros(20 * OPUS_FRAME, np.int16), speechlike(0.2, seed=1)])
    codec = av.CodecContext.create("libopus", "w")
    codec.bit_rate, codec.format, codec.layout, codec.sample_rate = 48_000, "s16", "mono", SAMPLE_RATE
    codec.time_base = fractions.Fraction(1, SAMPLE_RATE)
    codec.options = {"application": "lowdelay", "vbr": "constrained", "frame_duration": "10"}
    direct = LibOpus()
    for n in range(0, audio.size - OPUS_FRAME + 1, OPUS_FRAME):
        frame = av.AudioFrame.from_ndarray(audio[n:n + OPUS_FRAME].reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = SAMPLE_RATE, n, codec.time_base
        assert direct.encode(audio[n:n + OPUS_FRAME]) == bytes(codec.encode(frame)[0])


def test_a_run_of_sound_in_10_then_20_ms_frames_from_one_encoder_decodes_as_well_as_10_ms_frames() -> None:
    audio = np.concatenate([speechlike(0.6), np.zeros(SOUND_PACKET, np.int16)])
    mixed, tens = OpusPackets(), OpusPackets()
    sizes = [OPUS_FRAME] * 8 + [SOUND_PACKET] * ((audio.size - 8 * OPUS_FRAME) // SOUND_PACKET)
    starts = np.cumsum([0] + sizes[:-1])
    packets = [mixed.packet(audio[n:n + size], int(n)) for n, size in zip(starts, sizes)]
    assert [toc_samples(p) for p in packets] == sizes and all(bytes(p)[0] & 0b11 == 0 for p in packets)
    assert [p.pts for p in packets] == starts.tolist()
    reference = [tens.packet(audio[n:n + OPUS_FRAME], n) for n in range(0, audio.size, OPUS_FRAME)]
    assert [bytes(p) for p in packets[:8]] == [bytes(p) for p in reference[:8]]    # the same encoder until then
    ours, theirs = decode_opus(packets), decode_opus(reference)
    assert ours.size == theirs.size == audio.size
    across = 8 * OPUS_FRAME - 4 * OPUS_FRAME                   # 40 ms before the first 20 ms frame to the end
    heard = correlation_after_delay(audio, ours, across, audio.size - SOUND_PACKET - across - DELAY)
    assert heard > 0.75 and heard > correlation_after_delay(audio, theirs, across,
                                                            audio.size - SOUND_PACKET - across - DELAY) - 0.03
    assert sum(len(bytes(p)) for p in packets) < sum(len(bytes(p)) for p in reference)   # fewer TOC bytes


def toc_samples(packet) -> int:
    """The samples of an Opus packet, from its TOC byte (RFC 6716 section 3.1): the frame size of its
    configuration times the frame count of its code."""
    data = bytes(packet)
    config, code = data[0] >> 3, data[0] & 0b11
    ms = ((10, 20, 40, 60)[config & 3] if config < 12 else (10, 20)[config & 1] if config < 16
          else (2.5, 5, 10, 20)[config & 3])
    frames = data[1] & 0x3F if code == 3 else 2 if code else 1
    return round(frames * ms * SAMPLE_RATE / 1000)


def plays_whole(starts: list[int], sizes: dict[int, int], start: int, length: int) -> bool:
    """Whether the packets from `start` on tile the `length` samples there: each sample sent once, in order,
    the first SOUND_START_PACKETS packets of 10 ms and the rest of 20 ms (the last may be 10 ms)."""
    spoken = [p for p in starts if start <= p < start + length]
    tiled = spoken[0] == start and all(b == a + sizes[a] for a, b in zip(spoken, spoken[1:]))
    ends = spoken[-1] + sizes[spoken[-1]] >= start + length
    shape = ([sizes[p] for p in spoken[:SOUND_START_PACKETS]] == [OPUS_FRAME] * SOUND_START_PACKETS
             and all(sizes[p] == SOUND_PACKET for p in spoken[SOUND_START_PACKETS:-1]))
    return tiled and ends and shape


def test_the_audio_track_sends_sound_when_due_settled_silence_late_and_pauses_in_silence() -> None:
    clock = FakeClock()
    timeline = Timeline(clock.elapsed)
    track = AvatarAudioTrack(clock, timeline)
    samples = speechlike(0.3)
    reply = Utterance(Speech("x", AudioClip(samples), ()), np.zeros((8, 3), np.float32), np.arange(8))

    async def take(count: int) -> list[tuple[int, float, int]]:
        out = []
        for _ in range(count):
            packet = await track.recv()
            out.append((packet.pts, clock.now, toc_samples(packet), packet.size))
        return out

    async def scenario() -> tuple[list, list, object, float]:
        before = await take(40)                          # silence: settling, then paused
        placed_at = clock.now
        placement = timeline.place(reply)
        return before, await take(60), placement, placed_at
    before, after, placement, placed_at = asyncio.run(scenario())
    sent = before + after
    starts = [pts for pts, _, _, _ in sent]
    sizes = {pts: size for pts, _, size, _ in sent}
    assert starts == sorted(starts) and all(a + sizes[a] <= b for a, b in zip(starts, starts[1:]))   # no overlap
    gaps = [(a, b) for a, b in zip(starts, starts[1:]) if a + sizes[a] < b]
    assert len(gaps) > 10 and all(b - a == DTX_KEEPALIVE for a, b in gaps)   # paused: a packet every 400 ms
    assert track.pauses >= len(gaps)
    for pts, when, size, nbytes in sent:                 # sound when due, 20 ms of (DTX) silence 10 ms later
        silence = size == SILENCE_PACKET and nbytes == 1
        assert when == pytest.approx((pts + (OPUS_FRAME if silence else 0)) / SAMPLE_RATE)
    assert any(sizes[pts] == SILENCE_PACKET for pts, _, _, _ in before)
    start = placement.start_sample
    assert plays_whole(starts, sizes, start, samples.size)  # every sample of the reply, once, 10 then 20 ms
    first = next(when for pts, when, _, _ in sent if pts == start)
    assert first == pytest.approx(start / SAMPLE_RATE)   # the reply's first packet leaves when it is due
    assert start / SAMPLE_RATE - placed_at <= OPUS_FRAME / SAMPLE_RATE + 1e-9   # after at most a packet's wait


def test_a_paused_audio_track_wakes_for_a_reply_placed_from_another_thread() -> None:
    clock = FakeClock(real_waits=30.0)
    timeline = Timeline(clock.elapsed)
    track = AvatarAudioTrack(clock, timeline)
    samples = speechlike(0.2)
    reply = Utterance(Speech("x", AudioClip(samples), ()), np.zeros((5, 3), np.float32), np.arange(5))

    async def scenario() -> tuple[list[tuple[int, int]], object, float]:
        sent: list[tuple[int, int]] = []

        async def take() -> None:
            while len(sent) < 200:
                packet = await track.recv()
                sent.append((packet.pts, toc_samples(packet)))
        taking = asyncio.ensure_future(take())
        await asyncio.wait_for(clock.waiting.wait(), 30)      # settled and paused
        clock.now += 0.13                                     # a while into the pause
        paused_at = clock.now
        placement = await asyncio.to_thread(timeline.place, reply)   # as the speech worker places it
        while not sent or sent[-1][0] < placement.end_sample:
            await asyncio.sleep(0.01)
        taking.cancel()
        return sent, placement, paused_at
    sent, placement, paused_at = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert clock.woken == 1                                   # woken by the placement, not by the keepalive
    starts = [pts for pts, _ in sent]
    start = placement.start_sample
    resumed = starts[next(i for i, (pts, size) in enumerate(sent) if pts > paused_at * SAMPLE_RATE - size)]
    assert resumed <= start < resumed + 2 * OPUS_FRAME        # went on with the packet due, or the reply's first
    assert start >= round(paused_at * SAMPLE_RATE)            # the reply does not start in the past
    assert plays_whole(starts, dict(sent), start, samples.size)   # and plays whole


def moving_frames(count: int, size: int = 512) -> list[np.ndarray]:
    """yuv420p frames: a still gradient background with a bright disc moving over it."""
    y, x = np.mgrid[0:size, 0:size]
    frames = []
    for k in range(count):
        luma = (60 + 100 * x / size).astype(np.uint8)
        cx, cy = size // 2 + int(80 * np.cos(k / 6)), size // 2 + int(60 * np.sin(k / 4))
        luma[(x - cx) ** 2 + (y - cy) ** 2 < 50 ** 2] = 220
        chroma = np.full((size // 2, size), 128, np.uint8)
        frames.append(np.concatenate([luma, chroma]))
    return frames


def video_frame(yuv: np.ndarray, k: int) -> av.VideoFrame:
    frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
    frame.pts = k * 3600
    frame.time_base = fractions.Fraction(1, 90_000)
    return frame


def is_keyframe(payloads: list[bytes]) -> bool:
    return not vp8_depayload(payloads[0])[0] & 1        # VP8 frame tag: bit 0 clear on a key frame


@pytest.mark.timeout(60)
def test_vp8_keyframes_when_asked_and_a_new_codec_only_when_the_bitrate_falls_by_a_quarter_or_doubles() -> None:
    encoder = AvatarVp8Encoder()
    decoder = av.CodecContext.create("libvpx", "r")
    source = moving_frames(40)
    keyframes, errors = [], []
    for k, yuv in enumerate(source):
        if k == 10:
            encoder.target_bitrate = int(encoder.target_bitrate * 1.5)     # within a factor 2: same codec
        if k == 30:
            encoder.target_bitrate = encoder.target_bitrate * 3            # a large move: a new codec
        if k == 34:
            encoder.target_bitrate = int(encoder.target_bitrate * 0.85)    # a small fall: the same codec
        if k == 36:
            encoder.target_bitrate = int(encoder.target_bitrate * 0.7)     # a fall by over a quarter: a new one
        payloads, timestamp = encoder.encode(video_frame(yuv, k), force_keyframe=(k == 20))
        assert timestamp == k * 3600
        if is_keyframe(payloads):
            keyframes.append(k)
        data = b"".join(vp8_depayload(p) for p in payloads)
        for decoded in decoder.decode(av.Packet(data)):
            seen = decoded.to_ndarray(format="yuv420p")[:512].astype(np.float32)
            errors.append(np.mean((seen - yuv[:512]) ** 2))
    assert keyframes == [0, 20, 30, 36]
    assert encoder.codecs_made == 3
    assert len(errors) == len(source)
    psnr = 10 * np.log10(255 ** 2 / np.mean(errors))
    assert psnr > 38, psnr


def test_a_keyframe_request_is_taken_once() -> None:
    sender = types.SimpleNamespace(**{PLI_FLAG: True})      # as aiortc's sender after a PLI
    assert keyframe_asked(sender) and take_keyframe_request(sender)
    assert not keyframe_asked(sender) and not take_keyframe_request(sender)
