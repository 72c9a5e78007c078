"""Every judging threshold in one place, each with the reason for its value.

A decision records :data:`RULES_VERSION`, so an audit can tell which thresholds produced it.
"""

from __future__ import annotations

from dataclasses import dataclass

RULES_VERSION = "ipf-2026/meetvar-0.1"


@dataclass(frozen=True, slots=True)
class RefereeConfig:
    # --- segmentation (hip height over the ankles, in leg lengths: ~1 standing, ~0.4 at parallel) ---
    descent_extension: float = 0.82
    """Below this the lifter is squatting, not shifting weight, breathing or unracking."""
    unlock_extension: float = 0.90
    """The attempt starts where the hip last stood this high: the knees have just unlocked."""
    lockout_extension: float = 0.85
    """Back above this after the bottom, the lifter has stood up (lockout)."""
    rep_extension: float = 0.78
    """A dip that never goes below this is a set-up move, not an attempt. A high squat (hip 20-26 cm
    above the knee, measured in 3D motion capture) bottoms at 0.66-0.75; unracking dips stay above
    0.85; the knee-angle check in validity.py rejects what is not a squat at all."""
    leg_window_s: float = 4.0
    """Leg length is the longest seen over this window: long enough to include a straight-leg frame,
    short enough to follow a lifter walking towards or away from the camera."""
    track_min_visibility: float = 0.2
    """Positions the model is unsure of still time a rep well; depth itself needs ``min_visibility``."""
    finish_hold_s: float = 0.5
    """After lockout, watch this long for locked knees and still feet before calling the attempt."""
    lost_after_s: float = 0.7
    """A lifter unseen this long has left the frame, which ends an attempt in progress."""
    # --- is it an attempt at all (see referee/validity.py) ---
    min_leg_frac: float = 0.12
    """The lifter's legs span at least this share of the image height; smaller people are passers-by."""
    max_foot_travel_thigh: float = 1.0
    """Feet that travel further than this during the movement belong to someone walking."""
    max_step_travel_thigh: float = 0.5
    """Both ankles moving this far (thigh lengths, ~20 cm: one step of a walk-out) within
    ``step_window_s`` of the lowest point are steps: a walk-out, a re-rack or stepping in, never an
    attempt. A shuffle at the finish (``step_thigh``) is smaller, comes later and moves one foot."""
    step_window_s: float = 0.5
    """The feet are watched this long either side of the movement's lowest point."""
    max_bottom_knee_deg: float = 145.0
    """Mean of both knees at the bottom: every squat, even a quarter squat, bends both knees past
    this; a walking stride bends one knee while the other is straight (mean ~150° or more)."""
    min_visibility: float = 0.5
    """Landmarks below this visibility are not trusted for the depth rule."""
    preroll_s: float = 1.0
    """Frames kept before the descent so the replay and smoothing have context."""

    # --- depth rule ---
    smoothing_window: int = 7
    """Savitzky-Golay window (frames); order 2 keeps the bottom's curvature instead of shaving it."""
    surface_offset_thigh: float = 0.15
    """Net shift, in thigh lengths, from the model's hip-centre-over-knee-centre margin to the rule's
    "top surface of the legs at the hip joint" against "the top of the knees" (positive: the centres
    under-state depth). The model's hip landmark sits above the true hip joint and the surfaces lie
    above both centres; the net is measured, not assumed: ``meetvar evaluate --fit`` fits it with
    leave-one-video-out cross-validation on labelled footage."""
    min_side_view_yaw_deg: float = 35.0
    """Closer to a front or rear view than this, hip-over-knee height cannot be seen: undecided. Without
    the perspective correction (the default, below) projected 3D squats read 8 cm too high at 30° and
    6.4 cm at 45° (docs/mocap.md), so lower would judge what cannot be measured. With the correction on,
    20° measures |error| p90 2.4 cm on the projections and is the value to use with it."""
    perspective_correction: bool = False
    """Correct each leg's image margin for the camera's yaw and pitch (referee/perspective.py): off the
    side, the knee is nearer the camera than the hip and a camera above the hips draws it low. On
    projected 3D squats the plain margin reads 6.4 cm too high at 45° and calls 23 clear reps wrong at
    45-75°; corrected, +0.3 cm and none (docs/judging.md). Off by default all the same, because on the
    labelled real footage, with 20°, it decided fewer reps (13 of 22 H/M rows against 15), called an H/M
    rear view wrong in one of four shifted starts (−16 cm on a deep rep) and an L rear-oblique rep wrong
    that the plain margin gets right: it assumes the image centre and a field of view
    (``assumed_hfov_deg``), and BlazePose's own world depths look about half scale. Turn it on (with
    ``min_side_view_yaw_deg`` 20) for a camera whose field of view is known."""
    perspective_below_yaw_deg: float = 90.0
    """The correction is applied only to cameras whose estimated yaw is below this (90: every camera)."""
    assumed_hfov_deg: float = 69.0
    """Horizontal field of view of the camera when it is not known (the pose model does not give it):
    a phone's main camera (26 mm equivalent). Used only to place the hip's ray for that correction."""
    margin_noise_thigh: float = 0.04
    """Measurement noise of a margin read off the tracker's own poses (no crop ensemble), thigh lengths:
    on phone footage it moved by up to ~2.5 cm between starts a frame apart (docs/benchmarks.md)."""
    surface_error_thigh: float = 0.02
    """What the crop ensemble cannot see: the error of the fitted shift from joint centres to the rule's
    surfaces, and the model's own bias at the joints (one standard deviation, thigh lengths)."""
    oblique_error_thigh_at_45: float = 0.03
    """Margin error a 45°-oblique camera adds (one s.d., thigh lengths), scaled by cos(yaw)/cos(45°):
    nothing at a side view. Measured on projected motion capture (docs/mocap.md)."""
    interval_z: float = 1.645
    """Half-width of the margin interval in standard deviations (90 % two-sided): a call is made only
    when the whole interval is on one side of the line, i.e. at least 95 % sure; otherwise it is
    "too close to call" and goes to the referees."""
    min_silhouette_frames: int = 2
    """Bottom frames on which the silhouette's surfaces must be found before that margin is reported."""
    min_plate_frames: int = 2
    """A plate must be found on this many re-measured bottom frames before it sets the cm scale."""
    ensemble_reach_s: float = 0.4
    """Re-measured frames this close to the smoothed series' bottom are the attempt's bottom."""
    ensemble_top_frames: int = 3
    """The margin is the median of this many deepest re-measured frames."""
    # --- the other faults ---
    locked_knee_deg: float = 150.0
    """Knee angle (3D, from the metric landmarks) at or above which a knee counts as locked. Standing
    lifters measure 165-178° in this model, but its 3D angles wander by up to ~10° in oblique and rear
    views, so the card waits for a clearly bent knee: the benefit of the doubt goes to the lifter."""
    min_phase_s: float = 0.3
    """The start or finish must be seen this long before knee lock is judged there."""
    bar_drop_leg: float = 0.04
    """Downward bar travel during the ascent, in leg lengths (~3.5 cm), that earns a blue card; below it
    the shoulder landmark's own jitter could fake one."""
    rebound_leg: float = 0.05
    """A second descent of the hips this deep (leg lengths) after rising from the bottom is a second
    recovery attempt (double bounce)."""
    step_thigh: float = 0.2
    """Foot travel between start and finish, in thigh lengths (~8 cm), that counts as a step."""
    default_thigh_cm: float = 42.0
    """Thigh length used for cm when no scale is available (adult median, hip to knee centre)."""
