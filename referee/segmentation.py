"""Cuts a stream of poses into attempts: standing, descent (knees unlock), bottom, ascent, lockout.

A small state machine fed one frame at a time, so the streaming processor and the offline judge run
exactly the same code and cut exactly the same attempts. It works on the hip's height above the ankles
relative to the lifter's own standing height, which falls in every camera view (unlike a knee angle,
which a front view hides).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum

import numpy as np

from referee.config import RefereeConfig
from referee.keypoints import PoseFrame
from referee.signals import hip_height_px


class Phase(Enum):
    IDLE = "idle"  # no lifter, or no standing height yet
    STANDING = "standing"
    IN_REP = "in_rep"


@dataclass(frozen=True, slots=True)
class AttemptWindow:
    """The frames of one attempt, with context before and after, and why it ended."""

    frames: tuple[PoseFrame, ...]
    start_index: int  # index into frames where the knees unlocked
    end_index: int  # index into frames of lockout (or the last frame seen)
    standing_height_px: float
    ended_by: str  # "lockout" | "lifter_left" | "stream_end"


class RepSegmenter:
    """Feeds on frames, returns an :class:`AttemptWindow` whenever an attempt completes."""

    def __init__(self, config: RefereeConfig) -> None:
        self._cfg = config
        self._phase = Phase.IDLE
        self._recent: deque[tuple[PoseFrame, float | None]] = deque()
        self._rep: list[tuple[PoseFrame, float | None]] = []
        self._rep_start = 0
        self._standing_px: float | None = None
        self._min_ratio = 1.0
        self._last_seen_us: int | None = None
        self._heights: deque[float] = deque(maxlen=config.standing_stable_frames)

    @property
    def phase(self) -> Phase:
        return self._phase

    def push(self, frame: PoseFrame) -> AttemptWindow | None:
        cfg = self._cfg
        height = hip_height_px(frame, cfg.min_visibility) if frame.has_person else None
        if height is not None and height <= 0:
            height = None
        self._remember(frame, height)

        if height is None:
            gone_s = (frame.capture_us - self._last_seen_us) / 1e6 if self._last_seen_us is not None else 0.0
            if self._last_seen_us is not None and gone_s >= cfg.lost_after_s:
                return self._lost()
            return None
        self._last_seen_us = frame.capture_us
        self._heights.append(height)
        # A median of the last few frames rejects single-frame glitches without smearing the timing.
        filtered = float(np.median(list(self._heights)[-5:]))

        if self._phase is Phase.IDLE:
            if self._is_steady():
                self._standing_px = float(np.median(self._heights))
                self._phase = Phase.STANDING
            return None

        assert self._standing_px is not None
        ratio = filtered / self._standing_px
        if self._phase is Phase.STANDING:
            if ratio < cfg.descent_ratio:
                self._begin_rep()
                self._min_ratio = ratio
            elif self._is_steady():
                # Follow slow changes (the lifter walks out, the camera re-frames) while standing.
                self._standing_px = float(np.median(self._heights))
            return None

        # IN_REP
        self._rep.append(self._recent[-1])
        self._min_ratio = min(self._min_ratio, ratio)
        if ratio > cfg.lockout_ratio:
            deep_enough = self._min_ratio < cfg.min_rep_depth_ratio
            window = self._close_rep("lockout") if deep_enough else None
            self._phase = Phase.STANDING
            self._rep = []
            return window
        return None

    def finish(self) -> AttemptWindow | None:
        """The stream ended: an attempt past its bottom still gets judged."""
        if self._phase is Phase.IN_REP and self._min_ratio < self._cfg.min_rep_depth_ratio:
            return self._close_rep("stream_end")
        return None

    # -- internals -------------------------------------------------------------------------------
    def _remember(self, frame: PoseFrame, height: float | None) -> None:
        keep_us = int(self._cfg.preroll_s * 1e6)
        self._recent.append((frame, height))
        while self._recent and frame.capture_us - self._recent[0][0].capture_us > keep_us:
            self._recent.popleft()

    def _is_steady(self) -> bool:
        h = self._heights
        if len(h) < self._cfg.standing_stable_frames:
            return False
        med = float(np.median(h))
        return med > 0 and (max(h) - min(h)) / med <= self._cfg.standing_tolerance

    def _begin_rep(self) -> None:
        """Start the attempt where the hip last stood at unlock height: the knees unlocked there."""
        assert self._standing_px is not None
        self._phase = Phase.IN_REP
        self._rep = list(self._recent)
        unlock = self._cfg.unlock_ratio * self._standing_px
        start = 0
        for i in range(len(self._rep) - 1, -1, -1):
            h = self._rep[i][1]
            if h is not None and h >= unlock:
                start = i
                break
        self._rep_start = start

    def _close_rep(self, ended_by: str) -> AttemptWindow:
        assert self._standing_px is not None
        frames = tuple(f for f, _ in self._rep)
        return AttemptWindow(
            frames=frames,
            start_index=self._rep_start,
            end_index=len(frames) - 1,
            standing_height_px=self._standing_px,
            ended_by=ended_by,
        )

    def _lost(self) -> AttemptWindow | None:
        window = None
        if self._phase is Phase.IN_REP and self._min_ratio < self._cfg.min_rep_depth_ratio:
            window = self._close_rep("lifter_left")
        self._phase = Phase.IDLE
        self._rep = []
        self._heights.clear()
        self._last_seen_us = None
        self._standing_px = None
        return window
