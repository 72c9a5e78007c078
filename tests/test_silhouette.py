"""The rule's surfaces on a person mask: a drawn side-view squat whose surfaces are known exactly."""

from __future__ import annotations

import cv2
import numpy as np

from gpu_service.silhouette import crop_matrix, thigh_surfaces

THIGH = 120.0
THICK = 40  # thigh thickness, px


def _mask(hip: tuple[int, int], knee: tuple[int, int], torso_over_thigh: bool) -> np.ndarray:
    m = np.zeros((400, 500), np.uint8)
    cv2.line(m, hip, knee, 255, THICK)  # the thigh
    cv2.circle(m, knee, THICK // 2 + 4, 255, -1)  # the knee, a little wider than the thigh
    cv2.line(m, knee, (knee[0] - 10, knee[1] + 130), 255, 34)  # the shin
    if torso_over_thigh:  # folded deep over the thighs, as at the bottom of a real squat
        cv2.ellipse(m, (hip[0] + 60, hip[1] - 60), (70, 90), -30, 0, 360, 255, -1)
    else:  # upright, behind the hip
        cv2.line(m, (hip[0] - 10, hip[1]), (hip[0] + 20, hip[1] - 160), 255, 70)
    return m.astype(np.float64) / 255.0


def test_surfaces_on_a_level_thigh_are_level() -> None:
    hip, knee = (150, 200), (270, 200)
    found = thigh_surfaces(_mask(hip, knee, False), np.eye(3), hip, knee, THIGH)
    assert found is not None
    assert abs(found.hip_y - (200 - THICK / 2)) < 2.0  # the thigh's top edge at the hip's column
    assert abs(found.knee_y - (200 - THICK / 2 - 4)) < 2.0  # the top of the knee
    assert found.fit_rms_px < 1.5


def test_a_sloping_thigh_puts_the_hip_surface_below_the_knee_top() -> None:
    hip, knee = (152, 230), (270, 200)  # hip 30 px below the knee
    found = thigh_surfaces(_mask(hip, knee, False), np.eye(3), hip, knee, THIGH)
    assert found is not None
    margin = (found.hip_y - found.knee_y) / THIGH
    assert 0.2 < margin < 0.35  # the surfaces follow the centres' 0.25 thigh, less the knee's bulge


def test_no_surface_when_the_torso_hides_the_thigh() -> None:
    hip, knee = (150, 200), (270, 200)
    assert thigh_surfaces(_mask(hip, knee, True), np.eye(3), hip, knee, THIGH) is None


def test_no_surface_when_the_thigh_points_at_the_camera() -> None:
    hip, knee = (200, 200), (230, 190)
    assert thigh_surfaces(_mask(hip, knee, False), np.eye(3), hip, knee, THIGH) is None


def test_the_crop_matrix_maps_the_crop_corners() -> None:
    m = crop_matrix(100.0, 200.0, 50.0, 50.0, 0.0, 256)
    corners = np.array([[75.0, 175.0, 1.0], [125.0, 225.0, 1.0]]) @ m.T
    assert np.allclose(corners[:, :2] / corners[:, 2:], [[0.0, 0.0], [256.0, 256.0]], atol=1e-6)
