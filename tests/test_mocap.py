"""The depth call against 3D truth: a synthetic 3D lifter seen by cameras from the side round to the front.

Self-contained: the lifter is built here, so these run without ``../shared/data`` (CI machines lack it).
The real recordings are scored by ``python -m meetvar.mocap ../shared/data/mocap`` (see docs/mocap.md).
"""

from __future__ import annotations

import gzip
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from meetvar.mocap import (
    Skeleton3D,
    judge_projection,
    load_ui_prmd,
    project,
    true_margin,
    true_reps,
)
from referee.config import RefereeConfig
from referee.keypoints import BlazePoseLandmark as L
from referee.referee import Referee

FPS = 30.0
THIGH = 0.42
SHIN = 0.42
ANKLE_H = 0.08
DEEP_M = -0.08  # hip centre 8 cm below the knee centre: +0.19 thigh, clearly below parallel
HIGH_M = 0.10  # hip centre 10 cm above the knee centre: -0.24 thigh, clearly above
# The truth is joint centres: judge centre against centre; with the perspective correction and the
# side-view threshold it allows (both off by default on real footage: referee/config.py says why).
CENTRES = RefereeConfig(surface_offset_thigh=0.0, perspective_correction=True, min_side_view_yaw_deg=20.0)


def _sagittal(s: float, hip_over_knee_bottom: float) -> dict[str, tuple[float, float]]:
    """(forward, up) of each joint at squat progress ``s`` (0 standing, 1 bottom)."""
    shin = math.radians(35.0 * s)
    knee = (SHIN * math.sin(shin), ANKLE_H + SHIN * math.cos(shin))
    h = THIGH - s * (THIGH - hip_over_knee_bottom)
    h = max(-0.95 * THIGH, min(THIGH, h))
    hip = (knee[0] - math.sqrt(THIGH**2 - h**2), knee[1] + h)
    lean = math.radians(40.0 * s)
    shoulder = (hip[0] + 0.5 * math.sin(lean), hip[1] + 0.5 * math.cos(lean))
    nose = (shoulder[0] + 0.08, shoulder[1] + 0.2)
    return {
        "ankle": (0.0, ANKLE_H),
        "heel": (-0.06, 0.02),
        "toe": (0.16, 0.0),
        "knee": knee,
        "hip": hip,
        "shoulder": shoulder,
        "nose": nose,
    }


HALF_WIDTH = {"hip": 0.10, "knee": 0.10, "ankle": 0.12, "heel": 0.12, "toe": 0.13, "shoulder": 0.19}


def synthetic_lifter(
    bottoms_m: tuple[float, ...] = (DEEP_M, HIGH_M), *, lean_deg: float = 0.0, stand_s: float = 1.5
) -> Skeleton3D:
    """A sagittal stick figure extruded to 3D (hips 0.2 m apart), Y up, X forward, Z to the right.

    Each rep is a 2 s cosine down to ``hip_over_knee`` = the given bottom (metres, negative = below).
    ``lean_deg`` tilts the body (not the feet) forward about the ankles, as a lifter whose standing hip
    is in front of the ankle (≈7 cm at 5°).
    """
    profile: list[tuple[float, float]] = [(0.0, bottoms_m[0])] * int(stand_s * FPS)
    for b in bottoms_m:
        n = int(2.0 * FPS)
        profile += [(0.5 * (1 - math.cos(2 * math.pi * i / n)), b) for i in range(n)]
        profile += [(0.0, b)] * int(stand_s * FPS)
    c, sn = math.cos(math.radians(lean_deg)), math.sin(math.radians(lean_deg))
    joints: dict[str, list[np.ndarray]] = {}
    for s, b in profile:
        for name, (fwd, up) in _sagittal(s, b).items():
            if name not in ("heel", "toe"):  # lean about the ankle; the feet stay flat
                fwd, up = fwd * c + (up - ANKLE_H) * sn, ANKLE_H - fwd * sn + (up - ANKLE_H) * c
            if name == "nose":
                joints.setdefault("nose", []).append(np.array([fwd, up, 0.0]))
                continue
            w = HALF_WIDTH[name]
            joints.setdefault(f"{name}_r", []).append(np.array([fwd, up, w]))
            joints.setdefault(f"{name}_l", []).append(np.array([fwd, up, -w]))
    times = np.arange(len(profile)) / FPS
    return Skeleton3D(
        "synthetic", times, {k: np.stack(v) for k, v in joints.items()}, np.array([0, 1.0, 0]), FPS
    )


def _num(row: dict[str, object], key: str) -> float:
    value = row[key]
    assert isinstance(value, int | float), (key, row)
    return float(value)


def _judge(skel: Skeleton3D, yaw: float, seed: int = 0) -> list[dict[str, object]]:
    rows, extra = judge_projection(
        skel,
        true_reps(skel),
        CENTRES,
        yaw_deg=yaw,
        pitch_deg=10.0,
        distance_m=4.0,
        noise_px=1.5,
        drop_rate=0.1,
        seed=seed,
    )
    assert extra == 0, f"attempts that match no rep at yaw {yaw}"
    return rows


def test_synthetic_truth_is_what_it_was_built_to_be() -> None:
    skel = synthetic_lifter()
    reps = true_reps(skel)
    assert [round(r.margin_thigh, 3) for r in reps] == [round(-DEEP_M / THIGH, 3), round(-HIGH_M / THIGH, 3)]
    assert [r.bottom_s for r in reps] == pytest.approx([2.5, 6.0], abs=0.05)
    assert true_margin(skel)[0] == pytest.approx(-1.0)  # standing: hip a full thigh above the knee


def test_projection_geometry() -> None:
    """Side on from their right: the right leg is nearer and they face image right; front on: mirrored."""
    skel = synthetic_lifter()
    side = project(skel, yaw_deg=90, pitch_deg=0, distance_m=4)[0]
    assert side.keypoints is not None and side.world is not None
    kp = side.keypoints
    assert kp[L.RIGHT_HIP, 3] == pytest.approx(0.95) and kp[L.LEFT_HIP, 3] == pytest.approx(0.45)
    assert kp[L.RIGHT_FOOT_INDEX, 0] > kp[L.RIGHT_HEEL, 0]  # camera on their right: they face image right
    assert kp[L.RIGHT_SHOULDER, 1] < kp[L.RIGHT_HIP, 1] < kp[L.RIGHT_KNEE, 1] < kp[L.RIGHT_ANKLE, 1]
    # World landmarks: camera axes, hip-centred; the right hip is nearer (smaller z) side on.
    assert side.world[[L.LEFT_HIP, L.RIGHT_HIP]].mean(axis=0) == pytest.approx(np.zeros(3), abs=1e-9)
    assert side.world[L.RIGHT_HIP, 2] < side.world[L.LEFT_HIP, 2]
    front = project(skel, yaw_deg=0, pitch_deg=0, distance_m=4)[0]
    assert front.keypoints is not None and front.world is not None
    # Facing us: their right is on our left.
    assert front.keypoints[L.RIGHT_HIP, 0] < front.keypoints[L.LEFT_HIP, 0]
    assert front.world[L.RIGHT_HIP, 0] - front.world[L.LEFT_HIP, 0] == pytest.approx(-0.2, abs=1e-6)
    # The camera frames the lifter and drops frames on request, seeded.
    dropped = project(skel, yaw_deg=90, drop_rate=0.3, seed=4)
    assert 0.2 < sum(f.keypoints is None for f in dropped) / len(dropped) < 0.4
    assert all(0 < f.keypoints[L.RIGHT_HIP, 0] < f.width for f in dropped if f.keypoints is not None)


@pytest.mark.parametrize("yaw", [90.0, 60.0, -90.0])
def test_side_and_oblique_views_find_and_call_every_rep(yaw: float) -> None:
    skel = synthetic_lifter()
    for seed in range(3):
        rows = _judge(skel, yaw, seed)
        assert [r["status"] for r in rows] == ["below", "above"], (yaw, seed, rows)
        for r in rows:
            assert abs(_num(r, "yaw_est_deg") - abs(yaw)) < 10.0, r
            assert abs(_num(r, "bottom_error_s")) < 0.2, r
            # Measured over seeds 0-9 (noise 1.5 px, 10 % dropped, pitch 10°), perspective-corrected:
            # |error| ≤ 0.016 thigh at ±90° and ≤ 0.013 at 60° (uncorrected 60°: −0.12 … −0.18).
            assert abs(_num(r, "error_thigh")) < 0.05, r


@pytest.mark.parametrize(("z_noise_m", "bound"), [(0.0, 0.03), (0.04, 0.07)])
def test_oblique_45_margin_is_corrected_for_perspective_and_pitch(z_noise_m: float, bound: float) -> None:
    """At 45°, pitched 10°, the corrected margin is within ``bound`` thigh of the truth.

    Measured over seeds 0-9: |error| ≤ 0.013 thigh with exact world depths, −0.026 … +0.042 with 4 cm
    of noise on every world z (the model's depth is its weakest output); uncorrected it is −0.19 … −0.24.
    """
    skel = synthetic_lifter()
    for seed in range(3):
        rows, extra = judge_projection(
            skel,
            true_reps(skel),
            CENTRES,
            yaw_deg=45.0,
            pitch_deg=10.0,
            distance_m=4.0,
            noise_px=1.5,
            drop_rate=0.1,
            seed=seed,
            world_z_noise_m=z_noise_m,
        )
        assert extra == 0
        assert [r["status"] for r in rows] == ["below", "above"], rows
        for r in rows:
            assert abs(_num(r, "error_thigh")) < bound, r


def test_uncorrected_oblique_margin_reads_high() -> None:
    """The bias the correction removes is real: without it the 45° margin reads ≥ 0.15 thigh high."""
    skel = synthetic_lifter()
    cfg = replace(CENTRES, perspective_correction=False)
    rows, _ = judge_projection(
        skel, true_reps(skel), cfg, yaw_deg=45.0, pitch_deg=10.0, distance_m=4.0, noise_px=1.5, seed=0
    )
    assert all(_num(r, "error_thigh") < -0.15 for r in rows), rows


def test_front_and_near_front_views_are_undecided() -> None:
    skel = synthetic_lifter()
    for yaw in (0.0, 10.0):
        rows = _judge(skel, yaw)
        assert [r["status"] for r in rows] == ["undecided", "undecided"], (yaw, rows)
        for r in rows:
            assert abs(_num(r, "yaw_est_deg") - yaw) < 10.0, r


def test_a_30_degree_view_is_judged_now_that_perspective_is_corrected() -> None:
    """Below the old 35° limit: real 45° cameras read 24-31°. Measured |error| ≤ 0.011 thigh at 30°."""
    skel = synthetic_lifter()
    rows = _judge(skel, 30.0)
    assert [r["status"] for r in rows] == ["below", "above"], rows
    assert all(abs(_num(r, "error_thigh")) < 0.05 for r in rows), rows


def test_dropping_every_frame_gives_no_attempt() -> None:
    frames = project(synthetic_lifter(), yaw_deg=90, drop_rate=1.0)
    assert Referee(config=CENTRES).run(frames) == []


def test_standing_lean_does_not_bias_the_side_view_margin() -> None:
    skel = synthetic_lifter(lean_deg=5.0)
    rows, _ = judge_projection(
        skel, true_reps(skel), CENTRES, yaw_deg=90, pitch_deg=0, distance_m=4, noise_px=0.0, drop_rate=0.0
    )
    assert all(abs(_num(r, "error_thigh")) < 0.03 for r in rows), rows


def test_ui_prmd_loader_estimates_joint_centres(tmp_path: Path) -> None:
    """A tiny UI-PRMD-shaped file (39 points, mm, z up, x forward, +y = left): hip centres come from
    the pelvis markers (Harrington), knees from the lateral markers moved to the midline, and the rep
    is padded with standing still at both ends."""
    frames = 50
    rows = []
    for i in range(frames):
        drop = 300.0 * math.sin(math.pi * i / (frames - 1))  # the pelvis goes down 30 cm and back
        pts = np.zeros((39, 3))
        pts[23] = [0, 125, 950 - drop]  # left ASIS
        pts[24] = [0, -125, 950 - drop]  # right ASIS
        pts[25] = [-160, 45, 950 - drop]  # left PSIS
        pts[26] = [-160, -45, 950 - drop]  # right PSIS
        pts[28], pts[34] = [50, 140, 500], [50, -140, 500]  # lateral knees
        pts[30], pts[36] = [0, 130, 90], [0, -130, 90]  # lateral ankles
        pts[31], pts[37] = [-60, 110, 40], [-60, -110, 40]  # heels
        pts[32], pts[38] = [150, 120, 40], [150, -120, 40]  # toes
        pts[9], pts[16] = [0, 180, 1450 - drop], [0, -180, 1450 - drop]  # shoulders
        rows.append(",".join(f"{v:.3f}" for v in pts.ravel()))
    path = tmp_path / "m01_s01_e01_positions.txt.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(rows) + "\n")
    skel = load_ui_prmd(path, fps=30.0, pad_s=1.0)
    assert skel.name == "ui_prmd/m01_s01_e01"
    assert skel.up.tolist() == [0.0, 0.0, 1.0]
    assert skel.n_frames == 30 + math.floor(0.49 * 30) + 1 + 30  # 0.49 s of rep at 30 fps, padded
    # Harrington, PW 250 mm, PD 160 mm: 48.3 mm behind, 85.9 mm below, 89.8 mm lateral of mid-ASIS.
    assert skel.joints["hip_r"][0] == pytest.approx([-0.0483, -0.0898, 0.8641], abs=1e-4)
    assert skel.joints["hip_l"][0] == pytest.approx([-0.0483, 0.0898, 0.8641], abs=1e-4)
    assert skel.joints["knee_r"][0] == pytest.approx([0.05, -0.09, 0.5], abs=1e-6)
    assert skel.joints["knee_l"][0] == pytest.approx([0.05, 0.09, 0.5], abs=1e-6)
    assert np.all(skel.joints["hip_r"][:30] == skel.joints["hip_r"][0])  # standing still before the rep
    (rep,) = true_reps(skel)
    assert rep.margin_cm == pytest.approx(-(864.1 - 300 - 500) / 10, abs=0.5)
