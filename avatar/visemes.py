"""Lip sync targets: espeak-ng phonemes to visemes, and visemes to one mouth shape per video frame.

The viseme set is `avatar.types.VISEMES`. Most consonants made with the tongue (t d n s z l k g h th ...) get
"wide": teeth almost together, lips relaxed and a little spread, as in Rhubarb Lip Sync's consonant shape, so
the mouth stays slightly open through words and closes fully only for M/B/P and at pauses.
"""
from __future__ import annotations

import math

import numpy as np

from avatar.types import FPS, VISEMES, MouthShape, Phoneme, Speech

# espeak-ng mnemonics (English tables plus the shared consonants and pauses) by viseme.
_GROUPS: dict[str, str] = {
    # pauses, stress marks and other zero-sound markers
    "rest": "_ _: _:: _::: _! _^_ _X1 _| _;_ || | % %% , ,, ' '' '! = - : #X1 #@ #a #e #i #o #u *",
    # lips pressed together
    "closed": "p b m m- p- ph B",
    # lower lip against the upper teeth
    "fv": "f v v#",
    # lips rounded or protruded: back rounded vowels, w, English r and r-coloured vowels, sh/zh/ch/j
    "rounded": "w w# w2 u u: U U@ o o: o@ oU oU# O O: O2 O@ OI O~ oI uI y Y eU iU 3 3: r r- r/ r. r\" R R2 R3 "
               "S Z tS dZ S; Z; tS; dZ;",
    # jaw open: open and central vowels, schwa
    "open": "a a# a#2 a/ a2 aa A: A@ A# A~ aI aI@ aI2 aI3 aU aU@ V VR @ @- @2 @5 @# @L 0 0# 02 "
            "E E# E2 EI e@ e#",
    # lips spread, teeth close: front vowels, j, and the tongue consonants
    "wide": "i i: I I# I2 I2# IR i@ i@3 e e: eI j ; "
            "t t# t2 t[ t- d d# d[ n n- n. n^ N N- s s2 s. s; z z# z/2 z. z; T D ts dz "
            "k k- k# kh g x X C Q Q^ Q\" J J^ c c2 q h ? l l- l/ l/2 l/3 l^ l. l# L L/ **",
}
PHONEME_VISEMES: dict[str, str] = {symbol: viseme for viseme, symbols in _GROUPS.items()
                                   for symbol in symbols.split()}
assert set(PHONEME_VISEMES.values()) <= set(VISEMES)

# Target mouth per viseme: (opening, width, roundness), each in [0, 1].
VISEME_SHAPES: dict[str, MouthShape] = {
    "rest":    MouthShape(opening=0.04, width=0.45, roundness=0.15),
    "closed":  MouthShape(opening=0.00, width=0.45, roundness=0.20),
    "open":    MouthShape(opening=0.75, width=0.55, roundness=0.20),
    "rounded": MouthShape(opening=0.40, width=0.20, roundness=0.90),
    "fv":      MouthShape(opening=0.12, width=0.50, roundness=0.05),
    "wide":    MouthShape(opening=0.25, width=0.85, roundness=0.00),
}
_CONTACTS = ("closed", "fv")        # visemes whose lip contact must show, however short
_SMOOTHING = np.array([0.25, 0.5, 0.25], dtype=np.float32)  # per-frame coarticulation kernel, centred


def viseme_for(symbol: str) -> str:
    """The viseme of an espeak-ng phoneme mnemonic. Unknown ones lose their trailing modifiers ("a#2" -> "a#"
    -> "a") until one is known; pauses ("_...") and anything still unknown are "rest"."""
    while symbol:
        if symbol in PHONEME_VISEMES:
            return PHONEME_VISEMES[symbol]
        if symbol.startswith("_"):
            return "rest"
        symbol = symbol[:-1]
    return "rest"


def mouth_targets(speech: Speech, fps: int = FPS, n_frames: int | None = None) -> np.ndarray:
    """Mouth shape per video frame, float32 [F, 3] (opening, width, roundness).

    F is ceil(duration * fps) unless `n_frames` is given: frames past the speech rest, and fewer frames are
    the start of the full result. Each frame averages the viseme shapes over its interval, a short centred
    filter blends neighbours (coarticulation), then every M/B/P and F/V shows its lip contact on the frame
    holding its middle, so that short closures are not smoothed away.
    """
    natural = math.ceil(speech.duration * fps - 1e-9)
    n_frames = natural if n_frames is None else n_frames
    if n_frames <= 0:
        return np.zeros((0, 3), dtype=np.float32)
    targets = _smooth(_frame_averages(speech.phonemes, max(n_frames, natural), fps))     # [F, 3]
    contacts = sorted((p for p in speech.phonemes if p.viseme in _CONTACTS), key=lambda p: p.viseme == "closed")
    for phoneme in contacts:                      # closed last, so it wins a frame shared with an F/V
        frame = int((phoneme.start + phoneme.end) / 2 * fps)
        if frame < len(targets):
            targets[frame] = VISEME_SHAPES[phoneme.viseme].as_array()
    return targets[:n_frames]


def _frame_averages(phonemes: tuple[Phoneme, ...], n_frames: int, fps: int) -> np.ndarray:
    """float32 [F, 3]: the time average of the shapes over each frame's interval; rest outside the phonemes."""
    rest = VISEME_SHAPES["rest"].as_array()
    times, shapes = [0.0], []                    # piecewise-constant shape: shapes[i] holds from times[i]
    for phoneme in phonemes:
        if phoneme.start > times[-1]:
            times.append(phoneme.start)
            shapes.append(rest)
        if phoneme.end > times[-1]:
            times.append(phoneme.end)
            shapes.append(VISEME_SHAPES[phoneme.viseme].as_array())
    edges = np.arange(n_frames + 1, dtype=np.float64) / fps
    times.append(max(edges[-1], times[-1]) + 1.0)
    shapes.append(rest)
    spans = np.diff(times)[:, None] * np.array(shapes, dtype=np.float64)                  # [S, 3]
    integral = np.concatenate([np.zeros((1, 3)), np.cumsum(spans, axis=0)])               # [S+1, 3]
    per_frame = [np.diff(np.interp(edges, times, integral[:, k])) * fps for k in range(3)]
    return np.stack(per_frame, axis=1).astype(np.float32)


def _smooth(targets: np.ndarray) -> np.ndarray:
    """Centred smoothing over neighbouring frames; the ends repeat the edge frame."""
    pad = len(_SMOOTHING) // 2
    padded = np.pad(targets, ((pad, pad), (0, 0)), mode="edge")
    return sum(w * padded[i:i + len(targets)] for i, w in enumerate(_SMOOTHING)).astype(np.float32)
