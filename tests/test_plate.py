"""The plate measurer finds a 450 mm plate's rim as an ellipse and gives px per cm from its major axis,
through a bar, an arm and a body over the rim, and says nothing where there is no plate of the size
asked for."""

from __future__ import annotations

import math
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from gpu_service.plate import PLATE_DIAMETER_CM, PlateFit, measure_plate, midline_px_per_cm

W, H = 1280, 720
SHIFT = 4  # cv2 sub-pixel drawing: coordinates in 1/16 px
CENTRE = (700.0, 300.0)


def _pt(x: float, y: float) -> tuple[int, int]:
    return round(x * (1 << SHIFT)), round(y * (1 << SHIFT))


def _scene(
    seed: int,
    diameter: float = 260.0,
    ratio: float = 1.0,
    angle: float = 0.0,
    centre: tuple[float, float] = CENTRE,
    blob: float = 0.05,
    plate: bool = True,
) -> tuple[np.ndarray, float]:
    """A noisy gym-ish frame: shaded background with clutter away from the plate, a dark plate (an
    ellipse ``diameter`` x ``ratio * diameter`` at ``angle``) with a lighter lip ring and a light hub, a
    bar through its centre, a stick-figure arm crossing it, a torso beside it and a light blob over
    ``blob`` of its rim. Returns the frame and the fraction of the rim the occluders cover."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    img = (110 + 40 * np.sin(xx / 170.0) + 20 * np.cos(yy / 90.0)).astype(np.float32)
    d = diameter
    cx, cy = centre
    for _ in range(20):
        x, y = int(rng.integers(0, W)), int(rng.integers(0, H))
        if abs(x - cx) < 0.8 * d + 200 and abs(y - cy) < 0.8 * d + 200:
            continue
        size = rng.integers(20, 200, size=2)
        cv2.rectangle(img, (x, y), (x + int(size[0]), y + int(size[1])), float(rng.integers(40, 220)), -1)
    occ = np.zeros((H, W), np.uint8)  # what covers the plate
    if plate:
        ax = (d / 2, d / 2 * ratio)
        cv2.ellipse(img, _pt(cx, cy), _pt(*ax), angle, 0, 360, 35.0, -1, cv2.LINE_AA, SHIFT)
        lip = (0.86 * ax[0], 0.86 * ax[1])
        cv2.ellipse(img, _pt(cx, cy), _pt(*lip), angle, 0, 360, 60.0, 6, cv2.LINE_AA, SHIFT)
        cv2.ellipse(img, _pt(cx, cy), _pt(ax[0] / 6, ax[1] / 6), angle, 0, 360, 150.0, -1, cv2.LINE_AA, SHIFT)
    for target, value in ((img, None), (occ, 255.0)):
        # The bar, slightly tilted, through the plate's centre.
        y0, y1 = cy - 0.1 * d, cy + 0.1 * d
        cv2.line(target, (0, int(y0)), (W, int(y1)), value or 170.0, 14, cv2.LINE_AA)
        # Torso beside the plate, upper arm and forearm across it, head above the bar.
        hx, hy = cx - 0.62 * d, cy - 0.05 * d
        cv2.line(
            target, (int(hx), int(hy)), (int(hx - 0.2 * d), int(hy + 1.4 * d)), value or 90.0, int(0.2 * d)
        )
        ex, ey = cx + 0.1 * d, cy + 0.75 * d
        cv2.line(target, (int(hx), int(hy + 0.1 * d)), (int(ex), int(ey)), value or 200.0, int(0.07 * d))
        cv2.line(
            target, (int(ex), int(ey)), (int(cx - 0.2 * d), int(cy - 0.05 * d)), value or 200.0, int(0.06 * d)
        )
        cv2.circle(target, (int(hx + 0.05 * d), int(hy - 0.3 * d)), int(0.13 * d), value or 120.0, -1)
        if blob > 0:
            # A wedge over the right of the rim, ``blob`` of the perimeter in parameter angle.
            t = np.radians(np.linspace(-blob * 180.0, blob * 180.0, 30) - 20.0)
            c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
            u, v = 0.65 * d * np.cos(t), 0.65 * d * ratio * np.sin(t)
            pts = [*np.stack([cx + u * c - v * s, cy + u * s + v * c], axis=1).tolist(), [cx, cy]]
            cv2.fillPoly(target, [np.array(pts, np.int32)], value or 180.0)
    img = cv2.GaussianBlur(img, (0, 0), 1.0)
    img += rng.normal(0.0, 6.0, img.shape).astype(np.float32)
    # How much of the rim is hidden.
    tt = np.linspace(0, 2 * math.pi, 720, endpoint=False)
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    u, v = d / 2 * np.cos(tt), d / 2 * ratio * np.sin(tt)
    px = np.clip(np.rint(cx + u * c - v * s).astype(int), 0, W - 1)
    py = np.clip(np.rint(cy + u * s + v * c).astype(int), 0, H - 1)
    hidden = float(np.mean(occ[py, px] > 0))
    return np.clip(img, 0, 255).astype(np.uint8), hidden


def _near(diameter: float, centre: tuple[float, float] = CENTRE) -> tuple[float, float]:
    """Where the integrator's shoulder midpoint would be: well off the plate's centre."""
    return centre[0] + 0.4 * diameter, centre[1] + 0.5 * diameter


def _check(fit: PlateFit | None, diameter: float) -> PlateFit:
    assert fit is not None
    truth = diameter / PLATE_DIAMETER_CM
    assert fit.px_per_cm == pytest.approx(truth, rel=0.02)
    assert fit.px_per_cm == pytest.approx(fit.axes[0] / 45.0)
    assert fit.axes[0] >= fit.axes[1]
    assert 0.6 <= fit.support <= 1.0
    assert fit.residual_px < 2.0
    return fit


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("diameter", [150.0, 260.0, 420.0])
def test_side_view_plate_behind_bar_arm_and_body(seed: int, diameter: float) -> None:
    centre = (640.0, 360.0) if diameter > 400 else CENTRE
    gray, hidden = _scene(seed, diameter=diameter, centre=centre)
    assert 0.2 <= hidden <= 0.35  # a quarter of the rim, give or take, is covered
    fit = _check(measure_plate(gray, _near(diameter, centre), (0.8 * diameter, 1.25 * diameter)), diameter)
    assert math.dist(fit.centre, centre) < 2.0
    assert fit.axes[1] == pytest.approx(diameter, rel=0.02)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("ratio", "angle"), [(0.62, 25.0), (0.8, -70.0)])
def test_oblique_plate_major_axis_is_the_diameter(seed: int, ratio: float, angle: float) -> None:
    diameter = 280.0
    gray, hidden = _scene(
        seed, diameter=diameter, ratio=ratio, angle=angle, blob=0.15 if ratio < 0.7 else 0.05
    )
    assert 0.2 <= hidden <= 0.35
    fit = _check(measure_plate(gray, _near(diameter), (0.8 * diameter, 1.25 * diameter)), diameter)
    assert fit.axes[1] / fit.axes[0] == pytest.approx(ratio, abs=0.02)
    assert (fit.angle_deg - angle) % 180.0 == pytest.approx(0.0, abs=2.0) or (
        fit.angle_deg - angle
    ) % 180.0 == pytest.approx(180.0, abs=2.0)


def test_plate_found_without_hint() -> None:
    gray, _ = _scene(3, diameter=240.0, blob=0.0)
    fit = _check(measure_plate(gray, None, (200.0, 300.0)), 240.0)
    assert math.dist(fit.centre, CENTRE) < 2.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_plate_gives_none(seed: int) -> None:
    gray, _ = _scene(seed, plate=False)
    assert measure_plate(gray, _near(260.0), (208.0, 325.0)) is None
    assert measure_plate(gray, None, (150.0, 400.0)) is None


@pytest.mark.parametrize("seed", [0, 1])
def test_wrong_size_range_gives_none(seed: int) -> None:
    gray, _ = _scene(seed, diameter=260.0)
    near = _near(260.0)
    assert measure_plate(gray, near, (208.0, 325.0)) is not None  # the same frame, the right range
    assert measure_plate(gray, near, (90.0, 140.0)) is None  # the hub, never the plate
    assert measure_plate(gray, near, (330.0, 480.0)) is None


def test_hint_far_from_the_plate_gives_none() -> None:
    gray, _ = _scene(0, diameter=200.0, centre=(300.0, 360.0))
    assert measure_plate(gray, (300.0, 360.0), (170.0, 240.0)) is not None
    assert measure_plate(gray, (1100.0, 360.0), (170.0, 240.0)) is None


def test_rejects_colour_frames_and_nonsense_ranges() -> None:
    gray, _ = _scene(0)
    with pytest.raises(ValueError):
        measure_plate(np.dstack([gray, gray, gray]), None, (200.0, 300.0))
    assert measure_plate(gray, _near(260.0), (0.0, 0.0)) is None
    assert measure_plate(gray, (-5000.0, -5000.0), (208.0, 325.0)) is None


def test_midline_scale_is_the_harmonic_mean() -> None:
    near = PlateFit((0.0, 0.0), (270.0, 260.0), 0.0, 6.0, 0.8, 0.5)
    far = PlateFit((0.0, 0.0), (180.0, 170.0), 0.0, 4.0, 0.8, 0.5)
    # px per cm goes as 1 / distance: plates at distances 2 and 3 put the midline at 2.5.
    assert midline_px_per_cm(near, far) == pytest.approx(4.8)


def test_bundled_clip_has_no_plate_and_gets_none() -> None:
    """The bundled side-view clip (light bar with foam pads, no plates; checked by eye) at both reps'
    bottoms and standing: nothing in the frame passes for a plate of any plausible size."""
    clip = Path(__file__).resolve().parents[1] / "ingest" / "samples" / "rohanx01_squat.mp4"
    wanted = [3.0, 10.51, 17.38]
    seen = 0
    with av.open(str(clip)) as container:
        for frame in container.decode(video=0):
            t = float(frame.pts * frame.time_base)
            if min(abs(t - w) for w in wanted) > 0.02:
                continue
            gray = frame.to_ndarray(format="gray")
            assert measure_plate(gray, None, (100.0, 450.0)) is None
            assert measure_plate(gray, (330.0, 600.0), (150.0, 300.0)) is None  # about the shoulders
            seen += 1
            if t > max(wanted):
                break
    assert seen == 3
