"""The squat's other faults, each with the card a referee would show.

Blue: not upright with knees locked at the start or the finish; more than one recovery attempt (double
bounce); downward movement of the bar during the ascent. Yellow: stepping. Each check reports what it
measured, and says so when it could not see enough to judge rather than passing the lifter silently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from referee.config import RefereeConfig
from referee.keypoints import BlazePoseLandmark as L
from referee.keypoints import FloatArray, PoseFrame
from referee.segmentation import AttemptWindow, leg_length_px
from referee.signals import midpoint, smooth

LEGS_3D = ((L.LEFT_HIP, L.LEFT_KNEE, L.LEFT_ANKLE), (L.RIGHT_HIP, L.RIGHT_KNEE, L.RIGHT_ANKLE))


@dataclass(frozen=True, slots=True)
class Fault:
    code: str  # knees_not_locked_start|_finish, double_bounce, bar_down, stepping
    card: str  # "blue" | "yellow"
    detail: str


def knee_angle_deg(frame: PoseFrame) -> float | None:
    """Mean 3D knee angle of both legs: metric landmarks make it independent of the camera's view."""
    w = frame.world
    if w is None:
        return None
    angles = []
    for hip, knee, ankle in LEGS_3D:
        u, v = w[hip] - w[knee], w[ankle] - w[knee]
        n = float(np.linalg.norm(u) * np.linalg.norm(v))
        if n > 0:
            angles.append(float(np.degrees(np.arccos(np.clip(float(u @ v) / n, -1.0, 1.0)))))
    return float(np.mean(angles)) if angles else None


def find_faults(window: AttemptWindow, cfg: RefereeConfig) -> tuple[list[Fault], list[str]]:
    """Faults found, and notes on the checks that could not be made."""
    faults: list[Fault] = []
    notes: list[str] = []
    for frames, code, moment in (
        (window.before, "knees_not_locked_start", "start"),
        (window.after, "knees_not_locked_finish", "finish"),
    ):
        angles = [a for f in frames if (a := knee_angle_deg(f)) is not None]
        seen_s = (frames[-1].capture_us - frames[0].capture_us) / 1e6 if frames else 0.0
        if not angles or seen_s < cfg.min_phase_s:
            # A clip that begins mid-descent or ends at lockout shows no start or finish to judge.
            notes.append(f"knee lock at the {moment} not seen")
        elif max(angles) < cfg.locked_knee_deg:
            faults.append(Fault(code, "blue", f"knees not locked at the {moment} ({max(angles):.0f}°)"))

    ascent = _ascent(window)
    leg = _leg_px(window, cfg)
    if ascent is not None and leg is not None:
        bar_drop = _largest_drop([_bar_y(f, cfg) for f in ascent], cfg) / leg
        if bar_drop >= cfg.bar_drop_leg:
            faults.append(
                Fault("bar_down", "blue", f"bar moved down {bar_drop:.2f} leg lengths during the ascent")
            )
        ext = [e for e in window.extensions[window.bottom_index : window.end_index + 1] if e is not None]
        rebound = _largest_drop([-e for e in ext], cfg)  # extension falls = hips go down again
        if rebound >= cfg.rebound_leg:
            faults.append(
                Fault(
                    "double_bounce",
                    "blue",
                    f"hips sank {rebound:.2f} leg lengths after rising: second recovery",
                )
            )
    else:
        notes.append("ascent not seen well enough to check the bar path")

    start, finish = _feet_x(window.before, cfg), _feet_x(window.after, cfg)
    thigh = _thigh_px(window, cfg)
    if start is None or finish is None or thigh is None:
        notes.append("feet not seen at both start and finish")
    else:
        moved = float(np.max(np.abs(finish - start))) / thigh
        if moved >= cfg.step_thigh:
            faults.append(Fault("stepping", "yellow", f"a foot moved {moved:.2f} thigh lengths"))
    return faults, notes


def _ascent(window: AttemptWindow) -> tuple[PoseFrame, ...] | None:
    frames = window.frames[window.bottom_index : window.end_index + 1]
    return frames if len(frames) >= 4 else None


def _bar_y(frame: PoseFrame, cfg: RefereeConfig) -> float | None:
    """The bar rides on the upper back: the shoulder midpoint is its proxy in every view."""
    p = midpoint(frame, L.LEFT_SHOULDER, L.RIGHT_SHOULDER, cfg.track_min_visibility)
    return None if p is None else float(p[1])


def _largest_drop(ys: list[float | None], cfg: RefereeConfig) -> float:
    """Largest rise of image y (= downward movement) after the highest point reached so far."""
    vals = np.array([y for y in ys if y is not None], dtype=np.float64)
    if vals.size < 4:
        return 0.0
    vals = smooth(vals, cfg.smoothing_window)
    best_so_far = np.minimum.accumulate(vals)
    return float(np.max(vals - best_so_far))


def _leg_px(window: AttemptWindow, cfg: RefereeConfig) -> float | None:
    legs = [x for f in window.frames if (x := leg_length_px(f, cfg.track_min_visibility)) is not None]
    return max(legs) if legs else None


def _thigh_px(window: AttemptWindow, cfg: RefereeConfig) -> float | None:
    lengths = [
        float(np.linalg.norm(f.keypoints[h, :2] - f.keypoints[k, :2]))
        for f in window.frames
        if f.keypoints is not None
        for h, k, _ in LEGS_3D
        if min(f.keypoints[h, 3], f.keypoints[k, 3]) >= cfg.min_visibility
    ]
    return float(np.percentile(lengths, 90)) if lengths else None


def _feet_x(frames: tuple[PoseFrame, ...], cfg: RefereeConfig) -> FloatArray | None:
    """Median x of each ankle over a phase: medians ignore the model's frame-to-frame jitter."""
    rows = [
        (f.keypoints[L.LEFT_ANKLE, 0], f.keypoints[L.RIGHT_ANKLE, 0])
        for f in frames
        if f.keypoints is not None
        and min(f.keypoints[L.LEFT_ANKLE, 3], f.keypoints[L.RIGHT_ANKLE, 3]) >= cfg.track_min_visibility
    ]
    if len(rows) < 3:
        return None
    return np.asarray(np.median(np.array(rows), axis=0), dtype=np.float64)
