"""Motion planning: which driving frame to show at every output frame, while listening and while speaking.

The planner walks the driving clip with a Viterbi search over its N frames. For output frame t and driving
frame j the cost is

    C_t(j) = W_MOUTH * sum_d w_d (M[j, d] - m_t[d])^2     mouth shape against the target m_t
           + W_EYES  * (E[j] - e_t)^2                       eye openness against e_t (open, or a blink)
           + W_ANCHOR * step(j, a_t)                         drift towards the head-pose anchor a_t

and moving from frame i to frame j costs W_STEP * step(i, j), forbidden when step(i, j) > max_pose_step.
In a clip of more than `exact_up_to` frames (a custom avatar's), each step extends only the `beam` cheapest
paths so far, which keeps a step's cost at beam x N instead of N x N; a shorter clip is searched exactly.
step(i, j) is the RMS displacement of the rigid landmarks (upper jaw, brows, nose, eye corners) between the
two frames, in inter-ocular distances: how far the head would jump on screen. Mouth width is matched relative
to the clip's resting width (0.5 in a target means "this face at rest"), opening and roundness as they are.

Listening: the mouth target is the clip's resting mouth, blinks come every 3-5 s, and the anchor moves to a
nearby resting frame every 1-3 s, so the head drifts slowly. Idle frames are planned one second at a time,
so `idle(1)` called 25 times gives the same frames as `idle(25)`. Speaking plans the whole utterance at once
with the same blink and anchor schedule, which is kept on one frame clock across calls. A live session may
also steer its listening towards a given frame (`idle_towards`) and continue from frames another planner
chose (`follow`): that is how it joins the service's shared idle stream (streaming/shared_idle.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avatar.driving import DrivingClip, inter_ocular
from avatar.types import FPS

RIGID_POINTS = [0, 1, 2, 14, 15, 16, *range(17, 36), 36, 39, 42, 45]


@dataclass(frozen=True)
class MotionSettings:
    """Weights and rhythms of the planner."""

    fps: int = FPS
    max_pose_step: float = 0.10                          # IOD: the largest head jump between two output frames
    mouth_weights: tuple[float, float, float] = (1.0, 0.3, 0.3)   # opening, width, roundness
    w_mouth: float = 4.0
    w_eyes: float = 3.0
    w_anchor: float = 0.5
    w_step: float = 2.0
    blink_every: tuple[float, float] = (3.0, 5.0)        # seconds between blinks
    blink_profile: tuple[float, ...] = (0.5, 0.0, 0.0, 0.5)   # eye openness (x the open value) per blink frame
    anchor_every: tuple[float, float] = (1.0, 3.0)       # seconds the head rests before drifting on
    anchor_reach: float = 0.10                           # IOD: how far a new anchor may be from the last
    ease_frames: int = 3                                 # frames to close the mouth after a barge-in
    beam: int = 128                                      # Viterbi states extended per step in a longer clip
    exact_up_to: int = 256                               # frames of a clip searched exactly (the built-in 133)


def pose_steps(landmarks: np.ndarray) -> np.ndarray:
    """[N, N] RMS displacement of the rigid landmarks between every pair of frames, in median IODs."""
    rigid = landmarks[:, RIGID_POINTS].astype(np.float64)                  # [N, K, 2]
    iod = float(np.median(inter_ocular(landmarks)))
    flat = (rigid - rigid.mean((0, 1))).reshape(len(rigid), -1)            # centred: less cancellation below
    norms = (flat ** 2).sum(1)
    squared = np.maximum(norms[:, None] + norms[None] - 2.0 * flat @ flat.T, 0.0)   # |a - b|^2, one matmul
    np.fill_diagonal(squared, 0.0)
    return (np.sqrt(squared / len(RIGID_POINTS)) / iod).astype(np.float32)


class MotionPlanner:
    """Stateful: each call continues from the last frame it returned."""

    def __init__(self, clip: DrivingClip, seed: int = 0, settings: MotionSettings = MotionSettings()) -> None:
        self.settings = s = settings
        self.rng = np.random.default_rng(seed)
        self.mouth = clip.mouth.astype(np.float32)
        self.eyes = clip.eyes.astype(np.float32)
        self.steps = pose_steps(clip.landmarks)
        self.transition = np.where(self.steps <= s.max_pose_step, s.w_step * self.steps, np.inf).astype(np.float32)

        closed = self.mouth[:, 0] <= self.mouth[:, 0].min() + 0.05
        self.rest_mouth = np.median(self.mouth[closed], axis=0).astype(np.float32)
        self.eye_open = float(np.median(self.eyes))
        rest_cost = ((self.mouth - self.rest_mouth) ** 2 * s.mouth_weights).sum(1)
        restful = (rest_cost <= rest_cost.min() + 0.01) & (self.eyes >= 0.8 * self.eye_open)
        self.rest_frames = np.flatnonzero(restful) if restful.any() else np.array([int(rest_cost.argmin())])

        self.current = int(self.rest_frames[np.argmin(self.steps[self.rest_frames].mean(1))])  # most central
        self.clock = 0                                     # output frames emitted so far
        self._blinks: list[int] = [int(self.rng.uniform(1.0, s.blink_every[1]) * s.fps)]
        self._anchors: list[tuple[int, int]] = [(0, self.current)]
        self._queue: list[int] = []                        # idle frames planned but not yet returned
        self._ease_from: np.ndarray | None = None

    # --- public -------------------------------------------------------------------------------------------

    def idle(self, n: int) -> np.ndarray:
        """`n` listening frames: resting mouth, blinks, slow head drift. int64 [n]."""
        out: list[int] = []
        while len(out) < n:
            if not self._queue:
                start = out[-1] if out else self.current
                self._queue = list(self._plan_idle(self.clock + len(out), self.settings.fps, start))
            take = min(n - len(out), len(self._queue))
            out += self._queue[:take]
            del self._queue[:take]
        return self._emit(np.asarray(out, np.int64))

    def speak(self, mouth_targets: np.ndarray) -> np.ndarray:
        """One driving frame per row of `mouth_targets` (float32 [F, 3]: opening, width, roundness). int64 [F]."""
        targets = np.asarray(mouth_targets, np.float32)
        if targets.ndim != 2 or targets.shape[1] != 3:
            raise ValueError(f"mouth targets must be [F, 3], got shape {targets.shape}")
        self._drop_queue()
        self._ease_from = None
        if len(targets) == 0:
            return np.zeros(0, np.int64)
        targets = targets.copy()
        targets[:, 1] = self.rest_mouth[1] + (targets[:, 1] - 0.5)         # width relative to rest
        return self._emit(self._viterbi(self.clock, targets, self.current))

    def idle_towards(self, n: int, target: int) -> bool:
        """Plan the next `n` listening frames so that the last is driving frame `target`; they replace the
        frames planned so far, and `idle()` returns them. False, and nothing planned, when the pose steps
        cannot reach `target` in `n` frames."""
        if n < 1:
            return False
        path = self._plan_idle(self.clock, n, self.current, end=int(target))
        if path is None:
            return False
        self._queue = list(path)
        return True

    def follow(self, index: int) -> None:
        """Driving frame `index` was shown as the next frame in place of one of ours: continue from it."""
        self._drop_queue()
        self._emit(np.array([int(index)], np.int64))

    def reset_to_idle(self, current: int | None = None) -> None:
        """Barge-in: forget planned frames and close the mouth over a few frames, from `current` if given
        (the frame on screen), else from the last frame returned."""
        self._drop_queue()
        if current is not None:
            self.current = int(current)
        self._ease_from = self.mouth[self.current].copy()

    # --- planning -----------------------------------------------------------------------------------------

    def _emit(self, frames: np.ndarray) -> np.ndarray:
        if len(frames):
            self.current = int(frames[-1])
        self.clock += len(frames)
        return frames

    def _drop_queue(self) -> None:
        self._queue = []

    def _plan_idle(self, t0: int, n: int, start: int, end: int | None = None) -> np.ndarray | None:
        targets = np.repeat(self.rest_mouth[None], n, axis=0)
        if self._ease_from is not None:
            for k in range(min(self.settings.ease_frames, n)):
                a = (k + 1) / (self.settings.ease_frames + 1)
                targets[k] = (1 - a) * self._ease_from + a * self.rest_mouth
        path = self._viterbi(t0, targets, start, end)
        if path is not None:
            self._ease_from = None
        return path

    def _viterbi(self, t0: int, targets: np.ndarray, start: int, end: int | None = None) -> np.ndarray | None:
        """The cheapest path of len(targets) frames from `start` (see the module docstring for the costs), ending
        on `end` if given (None when it cannot)."""
        s = self.settings
        n = len(targets)
        eyes = self._eye_targets(t0, n)
        anchors = self._anchor_targets(t0, n)
        cost = s.w_mouth * (((self.mouth[None] - targets[:, None]) ** 2) * s.mouth_weights).sum(-1)   # [n, N]
        cost += s.w_eyes * (self.eyes[None] - eyes[:, None]) ** 2
        cost += s.w_anchor * self.steps[anchors]
        acc = np.full(len(self.mouth), np.inf, np.float32)
        acc[start] = 0.0
        back = np.empty((n, len(self.mouth)), np.int64)
        columns = np.arange(len(self.mouth))
        everything = columns if len(columns) <= max(s.exact_up_to, s.beam) else None
        for t in range(n):
            beam = everything if everything is not None else np.argpartition(acc, s.beam)[: s.beam]
            total = acc[beam, None] + self.transition[beam]                   # [from (in the beam), to]
            best = total.argmin(0)
            back[t] = beam[best]
            acc = total[best, columns] + cost[t]
        path = np.empty(n, np.int64)
        if end is not None and not np.isfinite(acc[end]):
            return None
        path[-1] = int(acc.argmin()) if end is None else end
        for t in range(n - 1, 0, -1):
            path[t - 1] = back[t, path[t]]
        return path

    def _eye_targets(self, t0: int, n: int) -> np.ndarray:
        s = self.settings
        while self._blinks[-1] < t0 + n:
            self._blinks.append(self._blinks[-1] + int(self.rng.uniform(*s.blink_every) * s.fps))
        self._blinks = [b for b in self._blinks if b + len(s.blink_profile) > t0]      # forget the past
        eyes = np.full(n, self.eye_open, np.float32)
        for start in self._blinks:
            for k, level in enumerate(s.blink_profile):
                if 0 <= start + k - t0 < n:
                    eyes[start + k - t0] = level * self.eye_open
        return eyes

    def _anchor_targets(self, t0: int, n: int) -> np.ndarray:
        s = self.settings
        while self._anchors[-1][0] < t0 + n:
            at, anchor = self._anchors[-1]
            near = self.rest_frames[self.steps[anchor, self.rest_frames] <= s.anchor_reach]
            moved = near[self.steps[anchor, near] > 1e-3]
            nxt = int(self.rng.choice(moved)) if len(moved) else anchor
            self._anchors.append((at + max(int(self.rng.uniform(*s.anchor_every) * s.fps), 1), nxt))
        while len(self._anchors) > 1 and self._anchors[1][0] <= t0:                # forget the past
            self._anchors.pop(0)
        starts = np.array([a for a, _ in self._anchors])
        frames = np.array([f for _, f in self._anchors])
        return frames[np.searchsorted(starts, np.arange(t0, t0 + n), side="right") - 1]
