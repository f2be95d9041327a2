"""The session timeline: utterances start on the next audio packet, with their frames on the nearest video frame;
audio and frames index the same clip."""
from __future__ import annotations

import asyncio

import numpy as np

from avatar.types import SAMPLE_RATE, AudioClip, Speech, Utterance
from streaming.guarded import GuardedPerformer
from streaming.timeline import HOLD, SAMPLES_PER_FRAME, Timeline
from streaming.tracks import AvatarVideoTrack, EncoderFrames
from streaming_support import FakeClock, TonePerformer


def utterance(n_samples: int) -> Utterance:
    samples = (np.arange(n_samples) % 1000 + 1).astype(np.int16)       # never zero: easy to see where it lies
    n_frames = -(-n_samples // SAMPLES_PER_FRAME)
    return Utterance(speech=Speech("x", AudioClip(samples), ()), mouth_targets=np.zeros((n_frames, 3), np.float32),
                     frame_indices=np.arange(500, 500 + n_frames))


def test_placement_starts_after_what_both_tracks_have_played() -> None:
    timeline = Timeline()
    for k in range(3):
        assert timeline.frame_index(k) is None           # idle
    timeline.audio(0, 960 * 9)                            # audio is ahead: 8640 samples = 4.5 frames
    placement = timeline.place(utterance(SAMPLE_RATE // 2))
    assert placement.start_sample == 8640                 # the first sample not handed out: no wait for a frame
    assert placement.start_frame == 5                     # the frame due nearest to it (its sample 9600)
    assert timeline.frame_index(4) == HOLD               # placed, not started: keep the frame on screen
    assert timeline.frame_index(5) == 500
    assert timeline.frame_index(6) == 501


def test_audio_and_frames_line_up() -> None:
    timeline = Timeline()
    clip = utterance(10 * SAMPLES_PER_FRAME + 100)
    timeline.audio(0, 480)                                # a quarter of a frame handed out
    placement = timeline.place(clip)
    start = placement.start_sample
    assert (start, placement.start_frame) == (480, 0)
    chunk = timeline.audio(start - 480, 960)              # straddles the start
    assert (chunk[:480] == 0).all()
    assert (chunk[480:] == clip.speech.audio.samples[:480]).all()
    # the audio of frame k is the clip's samples of frame k - start_frame, a quarter frame later than frame k
    k = placement.start_frame + 7
    audio = timeline.audio(start + 7 * SAMPLES_PER_FRAME, SAMPLES_PER_FRAME)
    assert (audio == clip.speech.audio.samples[7 * SAMPLES_PER_FRAME:8 * SAMPLES_PER_FRAME]).all()
    assert timeline.frame_index(k) == 507
    tail = timeline.audio(placement.end_sample - 50, 960)  # after the end: silence
    assert (tail[:50] != 0).all() and (tail[50:] == 0).all()
    assert timeline.frame_index(placement.end_frame) is None


def test_clear_drops_the_rest_at_once() -> None:
    timeline = Timeline()
    placement = timeline.place(utterance(SAMPLE_RATE))
    generation = timeline.generation
    k = placement.start_frame + 3
    assert timeline.frame_index(k) is not None
    timeline.clear()
    assert timeline.generation == generation + 1
    assert timeline.frame_index(k + 1) is None
    assert (timeline.audio((k + 1) * SAMPLES_PER_FRAME, 960) == 0).all()


def test_an_utterance_may_start_on_the_frame_decided_ahead() -> None:
    timeline = Timeline()
    for k in range(4):
        assert timeline.frame_index(k) is None
    timeline.sent(2)                                     # frame 3 is decided (idle) but not sent yet
    generation = timeline.generation
    placement = timeline.place(utterance(SAMPLE_RATE // 2))
    assert placement.start_frame == 3
    assert timeline.generation == generation + 1         # the video track must decide frame 3 again
    assert timeline.frame_index(3) == 500
    timeline.sent(5)
    for k in range(4, 7):
        timeline.frame_index(k)
    generation = timeline.generation
    assert timeline.place(utterance(SAMPLE_RATE // 2)).start_frame == 6
    assert timeline.generation == generation + 1
    timeline.sent(6)
    generation = timeline.generation
    assert timeline.place(utterance(SAMPLE_RATE // 2)).start_frame == 7   # nothing decided ahead: no re-render
    assert timeline.generation == generation


def test_a_frame_decided_before_a_reply_was_placed_on_it_is_not_committed() -> None:
    timeline = Timeline()
    for k in range(4):
        assert timeline.frame_index(k) is None
    assert timeline.sent(2, timeline.generation)         # frames 0-2 sent, frame 3 decided (idle)
    decided = timeline.generation
    placement = timeline.place(utterance(SAMPLE_RATE // 2))
    assert placement.start_frame == 3
    assert not timeline.sent(3, decided)                 # stale: decide it again, nothing committed
    assert timeline.frame_index(3) == 500
    assert timeline.sent(3, timeline.generation)
    assert timeline.place(utterance(SAMPLE_RATE // 2)).start_frame == 4     # frame 3 is out now


class PlacingTimeline(Timeline):
    """Places a reply as another thread may: after the video track decided frame `at` and found it current,
    just before the track commits it."""

    def __init__(self, at: int, reply: Utterance) -> None:
        super().__init__()
        self.at, self.reply = at, reply

    def sent(self, k: int, generation: int | None = None) -> bool:
        if k == self.at and self.reply is not None:
            reply, self.reply = self.reply, None
            assert self.place(reply).start_frame == k
        return super().sent(k, generation)


def test_a_reply_placed_while_the_video_track_commits_a_frame_keeps_its_first_frame() -> None:
    at = 12
    timeline = PlacingTimeline(at, TonePerformer.segment(first_frame=100))
    track = AvatarVideoTrack(FakeClock(), timeline, GuardedPerformer(TonePerformer()), EncoderFrames())

    async def shown(count: int) -> list[int]:
        frames = [await track.recv() for _ in range(count)]
        track.stop()
        return [round(float(f.to_ndarray(format="rgb24")[..., 0].mean()) / 2) for f in frames]   # 2 x index

    frames = asyncio.run(shown(at + 5))
    assert frames[at:] == [100, 101, 102, 103, 104], frames     # the reply from its first frame, on frame `at`
    assert max(frames[:at]) < 10                                 # idle before it


def test_a_quiet_read_is_longer_only_where_no_speech_lies_and_counts_as_handed_out() -> None:
    timeline = Timeline()
    assert len(timeline.audio(0, 480, quiet_count=960)) == 960                   # nothing placed: 20 ms
    placement = timeline.place(utterance(SAMPLES_PER_FRAME * 3))
    assert placement.start_sample == 960                                        # after what was handed out
    short = timeline.audio(placement.start_sample - 480, 480, quiet_count=960)  # speech within the 20 ms
    assert len(short) == 480 and not short.any()
    first = timeline.audio(placement.start_sample, 480, quiet_count=960)
    assert len(first) == 480 and (first == placement.segments[0].utterance.speech.audio.samples[:480]).all()
    assert len(timeline.audio(placement.end_sample, 480, quiet_count=960)) == 960   # after it: 20 ms again


def test_a_quiet_check_hands_out_the_packet_start_and_sees_a_reply_inside_the_20_ms() -> None:
    timeline = Timeline()
    assert timeline.quiet_ahead(0, 480, 960)
    placement = timeline.place(utterance(SAMPLES_PER_FRAME * 2))
    assert placement.start_sample == 480                                        # after the 480 handed out
    n = placement.start_sample - 480
    assert not timeline.quiet_ahead(n, 480, 960)                                # the reply starts inside
    assert timeline.quiet_ahead(placement.end_sample, 480, 960)


def test_a_reply_waits_for_no_frame_boundary_and_its_frames_stay_within_half_a_frame_of_its_audio() -> None:
    for now in range(0, 4 * SAMPLES_PER_FRAME, 480):       # a message arriving at each 10 ms over four frames
        timeline = Timeline()
        timeline.audio(0, now + 480)                         # the audio track hands out each packet when due
        for k in range(now // SAMPLES_PER_FRAME + 1):        # the video track sends each frame when due
            timeline.frame_index(k)
            timeline.sent(k)
        placement = timeline.place(utterance(SAMPLES_PER_FRAME * 3))
        start = placement.start_sample
        assert start >= now + 480 and placement.start_frame > now // SAMPLES_PER_FRAME   # nothing played changes
        assert start - now <= SAMPLES_PER_FRAME // 2                                  # at most 20 ms of waiting
        assert abs(placement.start_frame * SAMPLES_PER_FRAME - start) <= SAMPLES_PER_FRAME // 2
