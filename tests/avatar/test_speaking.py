"""A reply spoken in pieces (avatar/speaking.py) and played through a session's timeline: every synthesised
sample once, in order, with no gap or repeat at the joins; mouth targets that follow the phonemes across the
joins; and a barge-in during the second piece that silences audio and video at once."""
from __future__ import annotations

import numpy as np
import pytest

from avatar.motion import MotionPlanner
from avatar.speaking import speak_in_segments, speech_chunks
from avatar.types import FPS, SAMPLES_PER_FRAME, AudioClip, Phoneme, Speech
from avatar.visemes import VISEME_SHAPES, mouth_targets
from scripted_voice import ScriptedVoice
from streaming.timeline import HOLD, Timeline

# 0.113 + 0.271 s a word: no piece is a whole number of frames, so every join carries samples over
TEXT = "ma ma, ma ma ma. Ma ma ma ma? Ma."
WORDS = [2, 3, 4, 1]            # words per piece: "ma ma,", "ma ma ma.", "Ma ma ma ma?", "Ma."


def _voice() -> ScriptedVoice:
    return ScriptedVoice(closed=0.113, open_=0.271, counting=True)


@pytest.fixture(scope="module")
def planner(default_clip) -> MotionPlanner:
    return MotionPlanner(default_clip, seed=0)


def test_the_first_clause_then_each_sentence() -> None:
    assert speech_chunks(TEXT) == ["ma ma,", "ma ma ma.", "Ma ma ma ma?", "Ma."]
    assert speech_chunks("Hello! How can I help you today?") == ["Hello!", "How can I help you today?"]
    assert speech_chunks("  one clause only  ") == ["one clause only"]
    assert speech_chunks("3.5 per cent, or so") == ["3.5 per cent,", "or so"]     # no cut inside a number
    assert speech_chunks("") == []


def test_pieces_hold_every_sample_once_and_whole_frames_until_the_last(planner) -> None:
    voice = _voice()
    segments = list(speak_in_segments(voice, planner, TEXT))
    assert voice.spoken == speech_chunks(TEXT)
    assert [more for _, more in segments] == [True] * (len(segments) - 1) + [False]
    audio = [segment.speech.audio.samples for segment, _ in segments]
    for samples in audio[:-1]:
        assert len(samples) % SAMPLES_PER_FRAME == 0
    played = np.concatenate(audio)
    assert np.array_equal(played, (np.arange(voice.produced) % 30_000 + 1).astype(np.int16))
    for segment, _ in segments:
        n_frames = -(-len(segment.speech.audio.samples) // SAMPLES_PER_FRAME)
        assert len(segment.frame_indices) == len(segment.mouth_targets) == n_frames


def _placed(segments) -> tuple[Timeline, list]:
    """The segments placed as a session places them: the first, then each as it comes."""
    timeline = Timeline()
    for k in range(3):
        timeline.frame_index(k)
    timeline.audio(0, 960 * 5)
    (first, more), *rest = segments
    placement = timeline.place(first, more)
    for segment, more in rest:
        assert timeline.extend(placement, segment, more) is not None
    return timeline, placement


def test_the_timeline_plays_them_back_to_back(planner) -> None:
    voice = _voice()
    segments = list(speak_in_segments(voice, planner, TEXT))
    timeline, placement = _placed(segments)
    starts = [s.start_frame for s in placement.segments]
    ends = [s.end_frame for s in placement.segments]
    assert starts[1:] == ends[:-1]                                  # each starts on the frame the last one ended
    heard = np.concatenate([timeline.audio(n, 960) for n in range(0, placement.end_sample + 9600, 960)])
    loud = np.flatnonzero(heard)
    assert loud[0] == placement.start_sample and loud[-1] == placement.end_sample - 1
    assert np.array_equal(heard[loud[0]:loud[-1] + 1], (np.arange(voice.produced) % 30_000 + 1).astype(np.int16))
    frames = [timeline.frame_index(k) for k in range(placement.start_frame, placement.end_frame)]
    assert frames == list(np.concatenate([s.frame_indices for s, _ in segments]))
    assert timeline.frame_index(placement.end_frame) is None       # the last piece came: idle after it


def test_mouth_targets_follow_the_phonemes_across_the_joins(planner) -> None:
    voice = _voice()
    segments = list(speak_in_segments(voice, planner, TEXT))
    pieced = np.concatenate([s.mouth_targets for s, _ in segments])
    # the same words synthesised whole, on one time axis
    word = voice.closed + voice.open_
    phonemes, t = [], 0.0
    for _ in range(sum(WORDS)):
        phonemes += [Phoneme("m", t, t + voice.closed, "closed"), Phoneme("a", t + voice.closed, t + word, "open")]
        t += word
    whole = mouth_targets(Speech(TEXT, AudioClip(np.zeros(voice.produced, np.int16)), tuple(phonemes)), FPS)
    assert pieced.shape == whole.shape
    joins = np.cumsum([len(s.mouth_targets) for s, _ in segments])[:-1]
    near_join = np.isin(np.arange(len(whole)), joins - 1)           # its right neighbour was not synthesised yet
    assert np.allclose(pieced[~near_join], whole[~near_join], atol=1e-5)
    assert np.abs(pieced[near_join] - whole[near_join]).max() <= 0.25 * 0.8   # one smoothing tap's share at most
    # every "m" shows closed lips on the frame that holds its middle, the ones at the joins too
    closed = VISEME_SHAPES["closed"].as_array()
    for p in phonemes[::2]:
        assert np.allclose(pieced[int((p.start + p.end) / 2 * FPS)], closed)


def test_a_barge_in_during_the_second_piece_silences_audio_and_video_at_once(planner) -> None:
    segments = list(speak_in_segments(_voice(), planner, TEXT))
    timeline = Timeline()
    (first, _), (second, _), (third, third_more) = segments[0], segments[1], segments[2]
    epoch = timeline.epoch
    placement = timeline.place(first, True, epoch=epoch)
    timeline.extend(placement, second, True)
    k = placement.segments[1].start_frame + 2                       # two frames into the second piece
    assert timeline.frame_index(k) == second.frame_indices[2]
    n = k * SAMPLES_PER_FRAME
    assert np.any(timeline.audio(n, 960))
    timeline.clear()                                                 # the barge-in
    assert timeline.frame_index(k + 1) is None                      # the next frame is idle
    assert not np.any(timeline.audio(n + 960, 960))                 # the next audio chunk is silent
    # the pieces still being prepared for the old reply are refused
    assert timeline.extend(placement, third, third_more) is None
    assert timeline.place(first, True, epoch=epoch) is None
    assert timeline.frame_index(k + 2) is None and not np.any(timeline.audio(n + 1920, 1920))


def test_a_late_piece_waits_on_the_frame_on_screen_and_loses_no_sample(planner) -> None:
    segments = list(speak_in_segments(_voice(), planner, TEXT))
    timeline = Timeline()
    placement = timeline.place(segments[0][0], True)
    end = placement.end_frame
    for k in range(end + 3):                                        # the video reached the end of the first piece
        timeline.frame_index(k)
        timeline.sent(k)
    assert timeline.frame_index(end + 3) is HOLD                   # the next piece is awaited: hold, not idle
    timeline.audio(0, (end + 4) * SAMPLES_PER_FRAME)
    late = timeline.extend(placement, *segments[1])
    assert late.start_frame == end + 4                              # the first frame nobody has played yet
    assert np.array_equal(timeline.audio(late.start_sample, len(segments[1][0].speech.audio.samples)),
                          segments[1][0].speech.audio.samples)
    timeline.finish(placement)
    assert timeline.frame_index(late.end_frame) is None
