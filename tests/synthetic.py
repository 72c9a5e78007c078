"""Synthetic lifters for the referee's unit tests: a 2D side-view stick figure squatting to a chosen
depth, with metric world landmarks whose hip axis sets the camera yaw."""

from __future__ import annotations

import math

import numpy as np

from referee.keypoints import NUM_BLAZEPOSE_LANDMARKS, PoseFrame
from referee.keypoints import BlazePoseLandmark as L

FPS = 30.0
THIGH_PX = 200.0
SHIN_PX = 200.0
ANKLE = np.array([300.0, 1000.0])


def pose_at(depth: float, *, t_us: int, index: int, yaw_deg: float = 90.0, visible: bool = True) -> PoseFrame:
    """``depth`` 0 = standing; 1 = hip centre level with the knee centre; >1 below it."""
    # The knee moves forward and down; pick angles so the hip's height over the knee follows ``depth``.
    shin_angle = math.radians(35.0 * min(depth, 1.3))  # from vertical
    knee = ANKLE + np.array([SHIN_PX * math.sin(shin_angle), -SHIN_PX * math.cos(shin_angle)])
    hip_over_knee = THIGH_PX * (1.0 - depth)  # px the hip centre sits above the knee centre
    hip_over_knee = max(-THIGH_PX * 0.9, min(THIGH_PX, hip_over_knee))
    dx = math.sqrt(max(THIGH_PX**2 - hip_over_knee**2, 0.0))
    hip = knee + np.array([-dx, -hip_over_knee])
    shoulder = hip + np.array([60.0 * depth, -300.0])
    kp = np.zeros((NUM_BLAZEPOSE_LANDMARKS, 4))
    kp[:, 3] = 0.95 if visible else 0.1
    for idx, p in (
        (L.LEFT_ANKLE, ANKLE),
        (L.RIGHT_ANKLE, ANKLE),
        (L.LEFT_KNEE, knee),
        (L.RIGHT_KNEE, knee),
        (L.LEFT_HIP, hip),
        (L.RIGHT_HIP, hip),
        (L.LEFT_SHOULDER, shoulder),
        (L.RIGHT_SHOULDER, shoulder),
    ):
        kp[idx, :2] = p
    # Metric landmarks: the sagittal plane turned by the camera yaw (90 = side on), hips 0.2 m apart.
    yaw = math.radians(yaw_deg)
    forward = np.array([math.sin(yaw), 0.0, math.cos(yaw)])
    lateral = np.array([math.cos(yaw), 0.0, -math.sin(yaw)])
    metres_per_px = 0.42 / THIGH_PX
    world = np.zeros((NUM_BLAZEPOSE_LANDMARKS, 3))
    for (left, right), p in (
        ((L.LEFT_HIP, L.RIGHT_HIP), hip),
        ((L.LEFT_KNEE, L.RIGHT_KNEE), knee),
        ((L.LEFT_ANKLE, L.RIGHT_ANKLE), ANKLE),
        ((L.LEFT_SHOULDER, L.RIGHT_SHOULDER), shoulder),
    ):
        centre = forward * (p[0] - hip[0]) * metres_per_px + np.array(
            [0.0, (p[1] - hip[1]) * metres_per_px, 0.0]
        )
        world[left], world[right] = centre - 0.1 * lateral, centre + 0.1 * lateral
    return PoseFrame(t_us, index, 1080, 1920, kp if visible else None, world, 0.99, 1, "synthetic")


def frames_from_profile(profile: list[float], *, yaw_deg: float = 90.0, start_us: int = 0) -> list[PoseFrame]:
    """One frame per depth value at 30 fps."""
    return [
        pose_at(d, t_us=start_us + int(i * 1e6 / FPS), index=i, yaw_deg=yaw_deg)
        for i, d in enumerate(profile)
    ]


def rep_profile(
    depth: float, *, move_s: float = 1.0, base_start: float = 0.0, base_end: float = 0.0
) -> list[float]:
    """Standing at ``base_start``, down to ``depth``, back up to ``base_end``, cosine-shaped."""
    half = int(move_s * FPS)
    down = [base_start + (depth - base_start) * 0.5 * (1 - math.cos(math.pi * i / half)) for i in range(half)]
    up = [base_end + (depth - base_end) * 0.5 * (1 + math.cos(math.pi * i / half)) for i in range(half)]
    return [base_start] * int(1.5 * FPS) + down + up + [base_end] * int(1.5 * FPS)


def squat_session(
    depths: list[float],
    *,
    stand_s: float = 1.5,
    move_s: float = 1.0,
    yaw_deg: float = 90.0,
    start_us: int = 0,
) -> list[PoseFrame]:
    """Stand, then for each depth: descend, ascend, stand. Cosine-shaped like a real rep."""
    profile: list[float] = [0.0] * int(stand_s * FPS)
    for d in depths:
        n = int(2 * move_s * FPS)
        profile += [d * 0.5 * (1 - math.cos(2 * math.pi * i / n)) for i in range(n)]
        profile += [0.0] * int(stand_s * FPS)
    return [
        pose_at(d, t_us=start_us + int(i * 1e6 / FPS), index=i, yaw_deg=yaw_deg)
        for i, d in enumerate(profile)
    ]
