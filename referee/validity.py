"""Is this a squat attempt by the lifter at all? Rejects what segmentation alone would let through.

On a platform there are loaders, spotters and people walking behind; in a gym, everyone. The hips of
a person walking away from the camera also fall relative to their legs' length. A real attempt keeps
the feet planted and bends both knees at once; anything else is not judged. (A change of tracked
person shows up the same way: the feet jump.)
"""

from __future__ import annotations

import numpy as np

from referee.config import RefereeConfig
from referee.depth import SIDES
from referee.faults import knee_angle_deg
from referee.keypoints import BlazePoseLandmark as L
from referee.keypoints import PoseFrame
from referee.segmentation import AttemptWindow, leg_length_px
from referee.signals import midpoint


def why_not_an_attempt(window: AttemptWindow, cfg: RefereeConfig) -> str | None:
    active = window.frames[window.start_index : window.end_index + 1]
    legs = [x for f in active if (x := leg_length_px(f, cfg.track_min_visibility)) is not None]
    height = max((f.height for f in active), default=0)
    if not legs or height <= 0 or max(legs) < cfg.min_leg_frac * height:
        return "the person is too small in the frame to be the lifter"

    feet = [
        p[0]
        for f in active
        if (p := midpoint(f, L.LEFT_ANKLE, L.RIGHT_ANKLE, cfg.track_min_visibility)) is not None
    ]
    if len(feet) >= 3:
        travel = float(np.percentile(feet, 90) - np.percentile(feet, 10)) / (max(legs) / 2)
        if travel > cfg.max_foot_travel_thigh:
            return f"the feet travelled {travel:.1f} thigh lengths: walking, not squatting"

    bottom = window.frames[window.bottom_index]
    reach = int(cfg.step_window_s * 1e6)
    if (
        step := _stepping(tuple(f for f in active if abs(f.capture_us - bottom.capture_us) <= reach), cfg)
    ) is not None:
        return step

    angle = knee_angle_deg(bottom)
    if angle is not None and angle > cfg.max_bottom_knee_deg:
        return f"the knees bent only to {angle:.0f}°: not a squat"
    return None


def _stepping(active: tuple[PoseFrame, ...], cfg: RefereeConfig) -> str | None:
    """A walk-out from the rack, a re-rack or stepping in: both feet leave their places around the
    lowest point of the movement (``active`` is that part of it).

    Lifting a foot raises the ankles' midpoint, so the hip's height over it dips like a squat's: the
    segmenter cuts an "attempt" and the knee check alone may pass it under a heavy bar. In an attempt
    both feet stay planted (a small shuffle at the finish is the yellow card, not this). Each ankle is
    followed on its own, in both image axes (a step towards or away from a front camera moves the foot
    down or up the image), where the model sees it; the call needs *both* feet to have travelled,
    because a walk moves both while one badly tracked far foot (dark footage, a side view) moves alone.
    A foot lifted against the other was tried too and dropped: a rear view's ankles fake it. Only the
    frames around the lowest point count: a heavy single often follows its walk-out without a lockout
    in between, and the steps before it must not void the squat itself.
    """
    thighs = [
        float(np.hypot(*(f.keypoints[h, :2] - f.keypoints[k, :2])))
        for f in active
        if f.keypoints is not None
        for h, k in SIDES.values()
        if min(f.keypoints[h, 3], f.keypoints[k, 3]) >= cfg.min_visibility
    ]
    if not thighs:
        return None
    thigh_px = float(np.percentile(thighs, 90))
    travels = []
    for ankle in (L.LEFT_ANKLE, L.RIGHT_ANKLE):
        pts = [
            (float(f.keypoints[ankle, 0]), float(f.keypoints[ankle, 1]))
            for f in active
            if f.keypoints is not None and f.keypoints[ankle, 3] >= cfg.min_visibility
        ]
        if len(pts) < max(3, len(active) // 2):
            return None
        xy = np.asarray(pts)
        spread = np.percentile(xy, 90, axis=0) - np.percentile(xy, 10, axis=0)
        travels.append(float(np.hypot(*spread)) / thigh_px)
    travel = min(travels)
    if travel > cfg.max_step_travel_thigh:
        return f"both feet moved {travel:.1f} thigh lengths or more in the movement: steps, not an attempt"
    return None
