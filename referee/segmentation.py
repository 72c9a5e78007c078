"""Cuts a stream of poses into attempts: descent (knees unlock), bottom, ascent, lockout.

A small state machine fed one frame at a time, so the streaming processor and the offline judge run
exactly the same code and cut exactly the same attempts.

It follows the hip's height over the ankles divided by the lifter's leg length (thigh + shin in pixels,
the longest seen over the last few seconds). That ratio is about 1 standing and about 0.4 at a parallel
squat in every camera view and at every distance, and it needs no calm standing phase first, so a clip
that starts mid-descent, a lifter who walks in, or a camera that re-frames still gives clean attempts.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum

import numpy as np

from referee.config import RefereeConfig
from referee.keypoints import BlazePoseLandmark as L
from referee.keypoints import PoseFrame
from referee.signals import midpoint

LEGS = ((L.LEFT_HIP, L.LEFT_KNEE, L.LEFT_ANKLE), (L.RIGHT_HIP, L.RIGHT_KNEE, L.RIGHT_ANKLE))


class Phase(Enum):
    UNKNOWN = "unknown"  # no lifter yet, or just re-acquired
    UP = "up"  # standing, or moving without going deep
    IN_REP = "in_rep"
    HOLD = "hold"  # stood up: collecting a moment of lockout to see the knees locked and the feet


@dataclass(frozen=True, slots=True)
class AttemptWindow:
    """The frames of one attempt, with context before it, and why it ended."""

    frames: tuple[PoseFrame, ...]
    start_index: int  # index into frames where the knees unlocked
    end_index: int  # index into frames of lockout (or the last frame seen)
    ended_by: str  # "lockout" | "lifter_left" | "stream_end"
    min_extension: float  # lowest hip height over leg length in the attempt
    extensions: tuple[float | None, ...] = ()  # per frame, the signal segmentation used

    @property
    def bottom_index(self) -> int:
        """The frame where the hips were lowest over the ankles: the bottom of the attempt."""
        ext = self.extensions
        valid = [
            i for i in range(self.start_index, self.end_index + 1) if i < len(ext) and ext[i] is not None
        ]
        return min(valid, key=lambda i: ext[i] or 0.0) if valid else self.start_index

    @property
    def before(self) -> tuple[PoseFrame, ...]:
        """Frames up to the knees unlocking: the lifter's start position."""
        return self.frames[: self.start_index + 1]

    @property
    def after(self) -> tuple[PoseFrame, ...]:
        """Frames after lockout: the lifter's finish position."""
        return self.frames[self.end_index + 1 :]


def leg_length_px(frame: PoseFrame, min_visibility: float) -> float | None:
    """Thigh plus shin in pixels, the longer side: a bent leg keeps its length in a side view."""
    kp = frame.keypoints
    if kp is None:
        return None
    best = None
    for hip, knee, ankle in LEGS:
        if min(kp[hip, 3], kp[knee, 3], kp[ankle, 3]) < min_visibility:
            continue
        length = float(np.hypot(*(kp[hip, :2] - kp[knee, :2])) + np.hypot(*(kp[knee, :2] - kp[ankle, :2])))
        best = length if best is None else max(best, length)
    return best


class RepSegmenter:
    """Feeds on frames, returns an :class:`AttemptWindow` whenever an attempt completes."""

    def __init__(self, config: RefereeConfig) -> None:
        self._cfg = config
        self._phase = Phase.UNKNOWN
        self._recent: deque[tuple[PoseFrame, float | None]] = deque()
        self._legs: deque[tuple[int, float]] = deque()
        self._ext: deque[float] = deque(maxlen=5)
        self._rep: list[tuple[PoseFrame, float | None]] = []
        self._rep_start = 0
        self._min_ext = 1.0
        self._lockout_index = -1
        self._lockout_us = 0
        self._last_seen_us: int | None = None

    @property
    def phase(self) -> Phase:
        return self._phase

    def extension(self, frame: PoseFrame) -> float | None:
        """Hip height over the ankles in leg lengths, or None when the legs are not seen."""
        cfg = self._cfg
        if frame.keypoints is None:
            return None
        leg = leg_length_px(frame, cfg.track_min_visibility)
        if leg is not None:
            self._legs.append((frame.capture_us, leg))
        window_us = int(cfg.leg_window_s * 1e6)
        while self._legs and frame.capture_us - self._legs[0][0] > window_us:
            self._legs.popleft()
        hip = midpoint(frame, L.LEFT_HIP, L.RIGHT_HIP, cfg.track_min_visibility)
        ankle = midpoint(frame, L.LEFT_ANKLE, L.RIGHT_ANKLE, cfg.track_min_visibility)
        if hip is None or ankle is None or not self._legs:
            return None
        ref = max(length for _, length in self._legs)
        ext = float(ankle[1] - hip[1]) / ref if ref > 0 else None
        # Hips below the ankles is no human posture on a platform: a failed pose, not a deep squat.
        return ext if ext is not None and ext > 0 else None

    def push(self, frame: PoseFrame) -> AttemptWindow | None:
        cfg = self._cfg
        raw = self.extension(frame)
        self._remember(frame, raw)
        if raw is None:
            gone_s = (frame.capture_us - self._last_seen_us) / 1e6 if self._last_seen_us is not None else 0.0
            if self._last_seen_us is not None and gone_s >= cfg.lost_after_s:
                return self._lost()
            if self._phase in (Phase.IN_REP, Phase.HOLD):
                self._rep.append(self._recent[-1])
            return None
        self._last_seen_us = frame.capture_us
        self._ext.append(raw)
        # A median of the last few frames rejects single-frame glitches without smearing the timing.
        ext = float(np.median(self._ext))

        if self._phase is Phase.HOLD:
            if ext < cfg.descent_extension or frame.capture_us - self._lockout_us >= cfg.finish_hold_s * 1e6:
                window = self._close_rep("lockout")
                self._phase = Phase.UP
                self._rep = []
                if ext < cfg.descent_extension:  # straight into the next rep
                    self._begin_rep()
                    self._min_ext = ext
                return window
            self._rep.append(self._recent[-1])
            return None

        if self._phase is not Phase.IN_REP:
            if ext < cfg.descent_extension:
                self._begin_rep()
                self._min_ext = ext
            else:
                self._phase = Phase.UP
            return None

        self._rep.append(self._recent[-1])
        self._min_ext = min(self._min_ext, ext)
        if ext > cfg.lockout_extension:
            if self._min_ext < cfg.rep_extension:
                self._phase = Phase.HOLD
                self._lockout_index = len(self._rep) - 1
                self._lockout_us = frame.capture_us
            else:
                self._phase = Phase.UP
                self._rep = []
        return None

    def amend(self, frame: PoseFrame) -> bool:
        """Swap in a re-measured pose for the kept frame with the same capture time (see
        ``PoseFrame.refined``). Segmentation already used the first measurement and keeps it: only the
        depth judged on these frames changes. False when the frame is no longer kept."""
        hit = False
        for store in (self._recent, self._rep):
            for i, (old, ext) in enumerate(store):
                if old.capture_us == frame.capture_us:
                    store[i] = (frame, ext)
                    hit = True
        return hit

    def finish(self) -> AttemptWindow | None:
        """The stream ended: an attempt past its bottom still gets judged."""
        if self._phase is Phase.HOLD:
            return self._close_rep("lockout")
        if self._phase is Phase.IN_REP and self._min_ext < self._cfg.rep_extension:
            return self._close_rep("stream_end")
        return None

    # -- internals -------------------------------------------------------------------------------
    def _remember(self, frame: PoseFrame, ext: float | None) -> None:
        keep_us = int(self._cfg.preroll_s * 1e6)
        self._recent.append((frame, ext))
        while self._recent and frame.capture_us - self._recent[0][0].capture_us > keep_us:
            self._recent.popleft()

    def _begin_rep(self) -> None:
        """Start the attempt where the hip last stood at unlock height: the knees unlocked there."""
        self._phase = Phase.IN_REP
        self._rep = list(self._recent)
        exts = [e for _, e in self._rep]
        start = next(
            (i for i in range(len(exts) - 1, -1, -1) if (exts[i] or 0.0) >= self._cfg.unlock_extension), None
        )
        if start is None:
            # Never fully up (soft knees, or the clip began mid-descent): start at the highest point seen.
            seen = [i for i, e in enumerate(exts) if e is not None]
            start = max(seen, key=lambda i: (exts[i], i)) if seen else 0
        self._rep_start = start

    def _close_rep(self, ended_by: str) -> AttemptWindow:
        frames = tuple(f for f, _ in self._rep)
        end = self._lockout_index if self._phase is Phase.HOLD else len(frames) - 1
        self._lockout_index = -1
        exts = tuple(e for _, e in self._rep)
        return AttemptWindow(frames, self._rep_start, end, ended_by, round(self._min_ext, 4), exts)

    def _lost(self) -> AttemptWindow | None:
        window = None
        if self._phase is Phase.HOLD:
            window = self._close_rep("lockout")
        elif self._phase is Phase.IN_REP and self._min_ext < self._cfg.rep_extension:
            window = self._close_rep("lifter_left")
        self._phase = Phase.UNKNOWN
        self._rep = []
        self._ext.clear()
        self._legs.clear()
        self._last_seen_us = None
        return window
