"""Is this a squat attempt by the lifter at all? Rejects what segmentation alone would let through.

On a platform there are loaders, spotters and people walking behind; in a gym, everyone. The hips of
a person walking away from the camera also fall relative to their legs' length. A real attempt keeps
the feet planted and bends both knees at once; anything else is not judged. (A change of tracked
person shows up the same way: the feet jump.)
"""

from __future__ import annotations

import numpy as np

from referee.config import RefereeConfig
from referee.faults import knee_angle_deg
from referee.keypoints import BlazePoseLandmark as L
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
    angle = knee_angle_deg(bottom)
    if angle is not None and angle > cfg.max_bottom_knee_deg:
        return f"the knees bent only to {angle:.0f}°: not a squat"
    return None
