"""Every judging threshold in one place, each with the reason for its value.

A decision records :data:`RULES_VERSION`, so an audit can tell which thresholds produced it.
"""

from __future__ import annotations

from dataclasses import dataclass

RULES_VERSION = "ipf-2026/meetvar-0.1"


@dataclass(frozen=True, slots=True)
class RefereeConfig:
    # --- segmentation (hip height over the ankles, relative to the lifter's standing height) ---
    descent_ratio: float = 0.85
    """Below this the lifter is certainly squatting, not shifting weight or breathing."""
    unlock_ratio: float = 0.97
    """The attempt starts where the hip last stood this high: the knees have just unlocked."""
    lockout_ratio: float = 0.92
    """Back above this after the bottom, the lifter has stood up (lockout)."""
    min_rep_depth_ratio: float = 0.75
    """A dip that never goes below this is a set-up move, not an attempt."""
    standing_stable_frames: int = 8
    """Frames of steady hip height needed before a standing height is trusted."""
    standing_tolerance: float = 0.04
    """Relative spread of hip height that still counts as standing still."""
    lost_after_s: float = 0.7
    """A lifter unseen this long has left the frame, which ends an attempt in progress."""
    min_visibility: float = 0.5
    """Landmarks below this visibility are treated as not seen."""
    preroll_s: float = 1.0
    """Frames kept before the descent so the replay and smoothing have context."""

    # --- depth rule ---
    smoothing_window: int = 7
    """Savitzky-Golay window (frames); order 2 keeps the bottom's curvature instead of shaving it."""
    hip_surface_offset_thigh: float = 0.0
    """Shift from the model's hip centre to the top surface of the leg at the hip, in thigh lengths
    (positive = up). Fitted by ``meetvar evaluate``; 0 is the joint-centre rule."""
    knee_top_offset_thigh: float = 0.0
    """Shift from the knee centre to the top of the knee, in thigh lengths (positive = up)."""
    min_side_view_yaw_deg: float = 35.0
    """Closer to a front or rear view than this, hip-over-knee height cannot be seen: undecided."""
    margin_noise_thigh: float = 0.04
    """Typical measurement noise of the margin, in thigh lengths; sets how fast confidence grows."""
    default_thigh_cm: float = 42.0
    """Thigh length used for cm when no scale is available (adult median, hip to knee centre)."""
