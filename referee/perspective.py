"""Depth margins that an oblique or tilted camera does not bias.

The plain margin is an image-plane height: (hip row − knee row) / thigh pixels. That is the true height
difference only for a level camera that sees the thigh side on. Off the side, the knee is nearer the
camera than the hip (or farther, from behind), and a camera above the hips sees the nearer point lower
in the image: projected 3D squats (meetvar/mocap.py, docs/mocap.md) read 7 cm too high at 45° and
twice that with the camera pitched 15° down.

The pinhole geometry says exactly how much. For one leg, with D = knee − hip in camera axes (x right,
y down, z away), the hip at distance Z_h and normalised image row y_h = (v_h − c_y)/f, the knee at
Z_k = Z_h + D_z, and the camera pitched down by p (level otherwise: platform cameras are levelled,
as depth.IMAGE_UP assumes):

    image margin   m_img  = (Z_ref / Z_k) · (−D_y + y_h · D_z) / thigh
    true margin    m      = (−D_y · cos p − D_z · sin p) / thigh
    hence          m      = cos p · m_img · Z_k / Z_ref − (D_z / thigh) · (y_h · cos p + sin p)

where Z_ref is the distance at which the thigh measures ``thigh_px`` (Z_ref = f · thigh / thigh_px).
The second term is the whole bias: the knee's depth offset times the slope of the ray down to the hip
(``y_h cos p + sin p`` is that slope's tangent-like factor). In a side view D_z ≈ 0 and the image
margin is left as it is.

Why this form and not the margin read entirely from the world landmarks' 3D (which needs no focal
length): the image rows are what the model measures best, and on real labelled footage the world
landmarks' own hip-over-knee height misjudged clearly high squats as deep (docs/mocap.md, item 4). Here
the world landmarks supply only what the image cannot: the depth difference D_z (scaled by a slope of
0.1-0.4, so their depth noise is damped) and the camera's pitch.

Pitch: the lifter's left-right pairs (shoulders, hips, knees, ankles, heels, toes) are level in a
squat — both feet on the floor, the bar across both shoulders — so in camera axes each pair's vector h
satisfies h · up = 0 with up = (0, −cos p, −sin p), i.e. tan p = −h_y / h_z. A least-squares fit over
all pairs and frames uses many independent measurements, so per-joint depth noise averages out; and
it needs no assumption about posture (an "upright" line through the body leans by 3-7°, which was
the side-view bias removed earlier, see depth.IMAGE_UP).

Focal length: not measured by the pose model; taken from the camera's horizontal field of view
(``RefereeConfig.assumed_hfov_deg``, a phone's main camera by default). It enters only through y_h,
the hip's row off the image centre, which is small when the operator frames the lifter.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from referee.keypoints import BlazePoseLandmark as L
from referee.keypoints import FloatArray, PoseFrame

LEVEL_PAIRS: tuple[tuple[int, int], ...] = (
    (L.LEFT_SHOULDER, L.RIGHT_SHOULDER),
    (L.LEFT_HIP, L.RIGHT_HIP),
    (L.LEFT_KNEE, L.RIGHT_KNEE),
    (L.LEFT_ANKLE, L.RIGHT_ANKLE),
    (L.LEFT_HEEL, L.RIGHT_HEEL),
    (L.LEFT_FOOT_INDEX, L.RIGHT_FOOT_INDEX),
)
"""Left-right landmark pairs that stay level through a squat: they fix the camera's pitch."""

DISTANCE_JOINTS: tuple[int, ...] = tuple(j for pair in LEVEL_PAIRS[:4] for j in pair)
"""Shoulders, hips, knees and ankles: the model's steadiest joints, and far enough apart to fix the
hip's distance (the face and hands are guessed more freely, the feet add little leverage)."""

MAX_PITCH_DEG = 40.0
"""A platform camera looks down less than this; beyond it the pitch fit is noise, so it is clipped."""
MIN_PAIR_DEPTH_M = 0.03
"""Below this RMS depth (z) extent of the level pairs the camera looks square at them (a front view)
and their z says nothing about the pitch: it is then taken as level (0)."""


@dataclass(frozen=True, slots=True)
class ViewGeometry:
    """What the correction needs to know about the camera, estimated once per attempt.

    ``focal_px`` and the principal point (the image centre) place each joint's ray; ``pitch_deg`` is
    the camera's tilt below the horizon; ``thigh_m`` the metric thigh that margins are measured in.
    """

    pitch_deg: float
    focal_px: float
    centre_x_px: float
    centre_y_px: float
    thigh_m: float


def estimate_pitch_deg(frames: Iterable[PoseFrame], min_visibility: float = 0.2) -> float:
    """Camera pitch (degrees, + = looking down) from the world landmarks' level left-right pairs.

    Least squares of tan p = −h_y / h_z over every pair in every frame where both ends are seen. Level
    pairs are used rather than a standing "vertical" because a standing body leans by a few degrees,
    while both feet, knees, hips and shoulders stay at one height. Returns 0 (level) when the pairs
    have no depth extent (front or rear view: the pitch cannot be seen, and such views are undecided).
    """
    hy: list[float] = []
    hz: list[float] = []
    for f in frames:
        if f.world is None or f.keypoints is None:
            continue
        for a, b in LEVEL_PAIRS:
            if min(f.keypoints[a, 3], f.keypoints[b, 3]) < min_visibility:
                continue
            h = f.world[a] - f.world[b]
            hy.append(float(h[1]))
            hz.append(float(h[2]))
    if not hz:
        return 0.0
    y = np.asarray(hy)
    z = np.asarray(hz)
    szz = float(z @ z)
    if szz < len(z) * MIN_PAIR_DEPTH_M**2:
        return 0.0
    pitch = math.degrees(math.atan(-float(y @ z) / szz))
    return max(-MAX_PITCH_DEG, min(MAX_PITCH_DEG, pitch))


def focal_from_hfov(width_px: int, hfov_deg: float) -> float:
    """Focal length in pixels of a camera whose image ``width_px`` wide spans ``hfov_deg``."""
    return width_px / 2.0 / math.tan(math.radians(hfov_deg) / 2.0)


def view_geometry(
    frames: Sequence[PoseFrame],
    legs: Iterable[tuple[int, int]],
    thigh_px: float,
    hfov_deg: float,
    min_visibility: float = 0.2,
) -> ViewGeometry | None:
    """The camera as the correction needs it, from one attempt's frames; None without world landmarks.

    The metric thigh is the median world hip-knee length (a bone: rigid), so ``z_ref_m`` follows from
    the pixel thigh by similar triangles.
    """
    with_world = [f for f in frames if f.world is not None and f.keypoints is not None]
    if not with_world or thigh_px <= 0:
        return None
    pairs = list(legs)
    lengths = [
        float(np.linalg.norm(f.world[h] - f.world[k]))  # type: ignore[index]
        for f in with_world
        for h, k in pairs
    ]
    thigh_m = float(np.median(lengths))
    if thigh_m <= 0:
        return None
    first = with_world[0]
    focal = focal_from_hfov(first.width, hfov_deg)
    return ViewGeometry(
        pitch_deg=estimate_pitch_deg(with_world, min_visibility),
        focal_px=focal,
        centre_x_px=first.width / 2.0,
        centre_y_px=first.height / 2.0,
        thigh_m=thigh_m,
    )


def hip_distance_m(
    kp: FloatArray, world: FloatArray, view: ViewGeometry, min_visibility: float = 0.2
) -> float:
    """Distance (camera z, metres) of the hip centre, from the visible joints' pixels and world offsets.

    The world landmarks are the body in metres in the camera's axes, hip-centred, so each joint i at
    world (x_i, y_i, z_i) projects to u_i − c_x = f (X + x_i) / (Z + z_i) (and likewise v), with the hip
    centre at (X, Y, Z). That is linear in (Z, X, Y): least squares over the joints. Solved with the
    perspective rather than as one scale f / Z, because in an oblique view the knees and feet are
    nearer the camera than the hips and a single scale puts the hips ~10 % too near. Infinite if the
    fit fails (then no correction is made).
    """
    idx = np.array([j for j in DISTANCE_JOINTS if kp[j, 3] >= min_visibility], dtype=np.intp)
    if idx.size < 3:
        return math.inf
    du = kp[idx, 0] - view.centre_x_px
    dv = kp[idx, 1] - view.centre_y_px
    w = world[idx]
    f = view.focal_px
    n = du.shape[0]
    a = np.zeros((2 * n, 3))
    a[:n, 0], a[:n, 1] = du, -f
    a[n:, 0], a[n:, 2] = dv, -f
    b = np.concatenate([f * w[:, 0] - du * w[:, 2], f * w[:, 1] - dv * w[:, 2]])
    sol, *_ = np.linalg.lstsq(a, b, rcond=None)
    z = float(sol[0])
    return z if math.isfinite(z) and z > 0 else math.inf


def leg_margin(
    kp: FloatArray,
    world: FloatArray | None,
    hip: int,
    knee: int,
    up: FloatArray,
    thigh_px: float,
    view: ViewGeometry | None,
) -> float:
    """One leg's margin in thigh lengths (knee-centre height − hip-centre height; + = hip below knee),
    corrected for the camera's yaw (perspective) and pitch when ``view`` and ``world`` are given.

    Without them it is the plain image margin, (knee − hip) · up / thigh_px. With them it is the
    pinhole identity of the module docstring: the image margin rescaled to the knee's distance, minus
    the knee's depth offset (world z) times the slope of the ray down to the hip.
    """
    plain = float((kp[knee, :2] - kp[hip, :2]) @ up) / thigh_px
    if view is None or world is None:
        return plain
    z_centre = hip_distance_m(kp, world, view)
    if not math.isfinite(z_centre):
        return plain
    p = math.radians(view.pitch_deg)
    dz = float(world[knee, 2] - world[hip, 2])
    z_knee = max(0.2 * z_centre, z_centre + float(world[knee, 2]))  # a knee cannot reach the lens
    y_hip = (float(kp[hip, 1]) - view.centre_y_px) / view.focal_px
    # The hip-to-knee drop along the camera's y axis, in metres at the knee's distance, then turned
    # from the camera's axes to the vertical by the pitch.
    minus_dy = float((kp[knee, :2] - kp[hip, :2]) @ up) * z_knee / view.focal_px - y_hip * dz
    return (minus_dy * math.cos(p) - dz * math.sin(p)) / view.thigh_m


def fused_margin(
    kp: FloatArray,
    world: FloatArray | None,
    weights: Sequence[float] | FloatArray,
    legs: Iterable[tuple[int, int]],
    up: FloatArray,
    thigh_px: float,
    view: ViewGeometry | None,
) -> float:
    """The legs' margins (:func:`leg_margin`) fused with the given weights (summing to 1).

    With ``view`` None this equals the margin of the visibility-fused hip and knee points, because the
    plain margin is linear in them.
    """
    return float(
        sum(
            float(w) * leg_margin(kp, world, h, k, up, thigh_px, view)
            for w, (h, k) in zip(weights, legs, strict=True)
            if w > 0
        )
    )
