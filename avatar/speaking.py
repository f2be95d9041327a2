"""A reply spoken in pieces, so that the start of speech does not wait for the end of the reply.

The live service speaks the first clause of a reply as soon as it is synthesised and planned, while the rest
is prepared. The text is cut at the end of its first clause, then at each sentence end (`speech_chunks`);
each piece is synthesised by the voice on its own and its mouth targets and driving frames are planned by the
session's motion planner, which continues from the last frame of the previous piece.

The pieces are played back to back, so their audio must join without a gap or a repeat: every segment but
the last holds a whole number of video frames of audio (SAMPLES_PER_FRAME each), and the samples of a piece
beyond its last whole frame are carried into the next segment. The segments together hold every synthesised
sample once, in order, and each one starts a whole number of video frames after the reply's start. Mouth
targets are computed on the speech synthesised so far (all pieces, on one time axis), so that a frame at a join
sees the phonemes on both sides of it that exist when it is planned.

The exported video (avatar/export.py) synthesises each reply whole (`Performer.prepare`): its timing is what
it was before pieces existed. The live voice differs from it only in prosody at the joins.
"""
from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np

from avatar.types import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, AudioClip, Phoneme, Speech, Utterance, Voice

_CLAUSE_END = re.compile(r"(?<=[,;:.!?])\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def speech_chunks(text: str) -> list[str]:
    """The pieces of `text` to synthesise one after another: its first clause (up to the first , ; : . ! or ?
    followed by a space), then one piece per sentence. Blank pieces are dropped; joined with spaces they give
    the text back (whitespace aside)."""
    text = text.strip()
    head = _CLAUSE_END.split(text, maxsplit=1)
    if len(head) == 1:
        return [text] if text else []
    first, rest = head
    return [first] + [s for s in _SENTENCE_END.split(rest) if s.strip()]


def _shifted(phonemes: tuple[Phoneme, ...], by: float) -> list[Phoneme]:
    return [Phoneme(p.symbol, p.start + by, p.end + by, p.viseme) for p in phonemes]


def _within(phonemes: list[Phoneme], start: float, end: float) -> tuple[Phoneme, ...]:
    """The phonemes overlapping [start, end), clipped to it, on its own time axis."""
    return tuple(Phoneme(p.symbol, max(p.start, start) - start, min(p.end, end) - start, p.viseme)
                 for p in phonemes if p.end > start and p.start < end)


def speak_in_segments(voice: Voice, planner, text: str) -> Iterator[tuple[Utterance, bool]]:
    """(segment, more) for each piece of `text` in order; `more` is False for the last one.

    `planner` is the session's `avatar.motion.MotionPlanner` (used here, and by nothing else meanwhile).
    Raises the voice's errors (e.g. EmptyTextError) for a piece that cannot be spoken.
    """
    from avatar.visemes import mouth_targets

    chunks = speech_chunks(text)
    if not chunks:
        voice.synthesize(text)              # the voice's own error for empty text
        return
    samples: list[np.ndarray] = []          # everything synthesised so far, in order
    phonemes: list[Phoneme] = []            # on the same time axis
    total = 0                               # samples synthesised
    emitted = 0                             # samples handed out in segments (a whole number of frames until the end)
    for i, chunk in enumerate(chunks):
        speech = voice.synthesize(chunk)
        phonemes += _shifted(speech.phonemes, total / SAMPLE_RATE)
        samples.append(speech.audio.samples)
        total += len(speech.audio.samples)
        last = i == len(chunks) - 1
        end = total if last else total // SAMPLES_PER_FRAME * SAMPLES_PER_FRAME
        if end <= emitted:
            continue                        # less than a frame so far: carried into the next piece
        so_far = Speech(text, AudioClip(np.concatenate(samples)), tuple(phonemes))
        first_frame, n_frames = emitted // SAMPLES_PER_FRAME, -(-end // SAMPLES_PER_FRAME)
        targets = mouth_targets(so_far, fps=FPS, n_frames=n_frames)[first_frame:]
        audio = so_far.audio.samples[emitted:end]
        piece = Speech(chunk, AudioClip(audio), _within(phonemes, emitted / SAMPLE_RATE, end / SAMPLE_RATE))
        indices = np.asarray(planner.speak(targets), np.int64)
        emitted = end
        yield Utterance(speech=piece, mouth_targets=targets, frame_indices=indices), not last
