"""referee/perspective.py: the pinhole identity, the pitch fit and the plain fallback, on exact geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest

from referee.depth import IMAGE_UP, SIDES
from referee.keypoints import NUM_BLAZEPOSE_LANDMARKS, PoseFrame
from referee.keypoints import BlazePoseLandmark as L
from referee.perspective import (
    ViewGeometry,
    estimate_pitch_deg,
    focal_from_hfov,
    fused_margin,
    hip_distance_m,
    leg_margin,
)

F, W, H = 1400.0, 1920, 1080


def _frame(yaw_deg: float, pitch_deg: float, hip_over_knee_m: float) -> tuple[PoseFrame, float]:
    """A squatting lower body (thigh 0.42 m, hip ``hip_over_knee_m`` above the knee) seen 3.5 m away by
    a camera pitched down, yawed from the lifter's front; returns the frame and the true margin."""
    thigh = 0.42
    fwd = math.sqrt(thigh**2 - hip_over_knee_m**2)
    body: dict[int, tuple[float, float, float]] = {}  # (forward, up, right) metres
    for side, s in ((L.RIGHT_HIP, 1), (L.LEFT_HIP, -1)):
        body[side] = (0.0, 0.50 + hip_over_knee_m, 0.1 * s)
    for side, s in ((L.RIGHT_KNEE, 1), (L.LEFT_KNEE, -1)):
        body[side] = (fwd, 0.50, 0.12 * s)
    for side, s in ((L.RIGHT_ANKLE, 1), (L.LEFT_ANKLE, -1)):
        body[side] = (0.1, 0.08, 0.12 * s)
    for side, s in ((L.RIGHT_SHOULDER, 1), (L.LEFT_SHOULDER, -1)):
        body[side] = (0.2, 1.2, 0.19 * s)
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    up = np.array([0.0, 1.0, 0.0])
    toward = np.array([math.cos(yaw), 0.0, math.sin(yaw)])  # (forward, up, right) axes
    cam_pos = 3.5 * toward + np.array([0.0, 1.0 + 3.5 * math.tan(pitch), 0.0])
    z = np.array([0.0, 1.0, 0.0]) - cam_pos  # aimed at 1 m high: tilted down by exactly the pitch
    z /= np.linalg.norm(z)
    y = -up - (-up @ z) * z
    y /= np.linalg.norm(y)
    x = np.cross(y, z)
    rot = np.stack([x, y, z])
    kp = np.zeros((NUM_BLAZEPOSE_LANDMARKS, 4))
    world = np.zeros((NUM_BLAZEPOSE_LANDMARKS, 3))
    cam = {i: rot @ (np.array(p) - cam_pos) for i, p in body.items()}
    hip_c = (cam[L.RIGHT_HIP] + cam[L.LEFT_HIP]) / 2
    for i, c in cam.items():
        kp[i] = [F * c[0] / c[2] + W / 2, F * c[1] / c[2] + H / 2, 0.0, 0.9]
        world[i] = c - hip_c
    return PoseFrame(0, 0, W, H, kp, world, 0.9, 1, "test"), -hip_over_knee_m / thigh


def _view(pitch_deg: float) -> ViewGeometry:
    return ViewGeometry(pitch_deg, F, W / 2, H / 2, 0.42)


@pytest.mark.parametrize("yaw", [20.0, 45.0, 90.0, -60.0])
@pytest.mark.parametrize("pitch", [0.0, 15.0])
@pytest.mark.parametrize("hip_over_knee", [0.05, 0.0, -0.06])
def test_leg_margin_is_exact_on_a_pinhole(yaw: float, pitch: float, hip_over_knee: float) -> None:
    frame, truth = _frame(yaw, pitch, hip_over_knee)
    assert frame.keypoints is not None
    thigh_px = 200.0  # only the plain margin reads it
    for hip, knee in SIDES.values():
        got = leg_margin(frame.keypoints, frame.world, hip, knee, IMAGE_UP, thigh_px, _view(pitch))
        assert got == pytest.approx(truth, abs=1e-9)


def test_plain_margin_is_biased_off_the_side_and_kept_without_a_view() -> None:
    frame, truth = _frame(45.0, 15.0, 0.0)
    assert frame.keypoints is not None
    kp = frame.keypoints
    plain = leg_margin(kp, frame.world, L.RIGHT_HIP, L.RIGHT_KNEE, IMAGE_UP, 200.0, None)
    assert plain == pytest.approx(float((kp[L.RIGHT_KNEE, :2] - kp[L.RIGHT_HIP, :2]) @ IMAGE_UP) / 200.0)
    assert plain < truth - 0.1  # the knee, nearer the camera and below it, is drawn low: reads high
    assert leg_margin(kp, None, L.RIGHT_HIP, L.RIGHT_KNEE, IMAGE_UP, 200.0, _view(15.0)) == plain
    # Fusing with weights: the weighted mean of the legs' margins.
    fused = fused_margin(kp, frame.world, [0.25, 0.75], SIDES.values(), IMAGE_UP, 200.0, _view(15.0))
    assert fused == pytest.approx(truth, abs=1e-9)


@pytest.mark.parametrize("yaw", [30.0, 45.0, 90.0])
@pytest.mark.parametrize("pitch", [0.0, 10.0, 20.0])
def test_pitch_from_level_pairs(yaw: float, pitch: float) -> None:
    frames = [_frame(yaw, pitch, h)[0] for h in (0.3, 0.1, -0.05)]
    assert estimate_pitch_deg(frames) == pytest.approx(pitch, abs=1e-6)


def test_pitch_is_level_when_the_pairs_have_no_depth() -> None:
    """Front on, the left-right pairs lie across the image: their z says nothing, so 0 (level)."""
    assert estimate_pitch_deg([_frame(0.0, 20.0, 0.1)[0]]) == 0.0


def test_hip_distance_and_focal() -> None:
    frame, _ = _frame(45.0, 10.0, 0.0)
    assert frame.keypoints is not None and frame.world is not None
    z = hip_distance_m(frame.keypoints, frame.world, _view(10.0))
    assert 3.0 < z < 4.0
    assert focal_from_hfov(1920, 90.0) == pytest.approx(960.0)
