"""3D motion capture as ground truth for the depth call: project real joints into any camera, judge, compare.

Labelled video only tells us what a person thought they saw; 3D joint centres tell us exactly how far the
hip centre went below (or stayed above) the knee centre. Projecting them through a pinhole camera placed
anywhere around the lifter — front to side, level or pitched, near or far, with pixel noise and dropped
frames — gives poses shaped like the pose model's output, so the unchanged judging core can be scored
against the truth camera by camera. The truth here is centre-against-centre, so the referee is run with
``RefereeConfig(surface_offset_thigh=0.0)``: this measures the geometry (view, perspective, pitch), not the
surface offset, which only labelled footage can fit.

Loaders read the three formats in ``../shared/data/mocap`` (evaluation data: read at evaluation time, never
copied into the project): OpenSim/markerless ``.trc`` marker files, OpenCap forward-kinematics joint
position CSVs, and UI-PRMD's Vicon marker positions (``ui_prmd/*_positions*.txt.gz``, joint centres
estimated from the markers). All become a :class:`Skeleton3D` with the same joint names.
"""

from __future__ import annotations

import csv
import gzip
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from meetvar.evaluation.reliability import Judged
from meetvar.evaluation.reliability import table as reliability_table
from referee.config import RefereeConfig
from referee.keypoints import NUM_BLAZEPOSE_LANDMARKS, FloatArray, PoseFrame
from referee.keypoints import BlazePoseLandmark as L
from referee.referee import Referee

MATCH_WINDOW_S = 0.7
"""A decided attempt and a true rep are the same rep when their bottoms are this close (as ``evaluate``)."""
NEAR_PARALLEL_CM = 3.0
"""UI-PRMD reps whose true margin is within this of parallel: the ones a depth call is really about."""
BORDERLINE_THIGH = 0.03
"""True margins within this of zero (about 1.2 cm) are "about parallel": either call is defensible."""
FAR_SIDE_VIS_DROP = 0.5
"""BlazePose's visibility for the far leg falls as the view turns side on: 0.95 - 0.5·|sin yaw|."""
NEAR_SIDE_VIS = 0.95

JOINTS: tuple[str, ...] = (
    "hip_r",
    "hip_l",
    "knee_r",
    "knee_l",
    "ankle_r",
    "ankle_l",
    "heel_r",
    "heel_l",
    "toe_r",
    "toe_l",
    "shoulder_r",
    "shoulder_l",
    "nose",
)
"""Canonical joint names of a :class:`Skeleton3D`; ``nose`` is optional, the rest are required."""

BLAZEPOSE_INDEX: dict[str, int] = {
    "hip_r": L.RIGHT_HIP,
    "hip_l": L.LEFT_HIP,
    "knee_r": L.RIGHT_KNEE,
    "knee_l": L.LEFT_KNEE,
    "ankle_r": L.RIGHT_ANKLE,
    "ankle_l": L.LEFT_ANKLE,
    "heel_r": L.RIGHT_HEEL,
    "heel_l": L.LEFT_HEEL,
    "toe_r": L.RIGHT_FOOT_INDEX,
    "toe_l": L.LEFT_FOOT_INDEX,
    "shoulder_r": L.RIGHT_SHOULDER,
    "shoulder_l": L.LEFT_SHOULDER,
    "nose": L.NOSE,
}

# OpenCap forward kinematics: body origins are joint centres (femur = hip, tibia = knee, talus = ankle).
_OPENCAP_BODIES: dict[str, tuple[str, ...]] = {
    "hip_r": ("femur_r",),
    "hip_l": ("femur_l",),
    "knee_r": ("tibia_r",),
    "knee_l": ("tibia_l",),
    "ankle_r": ("talus_r",),
    "ankle_l": ("talus_l",),
    "heel_r": ("calcn_r",),
    "heel_l": ("calcn_l",),
    "toe_r": ("toes_r",),
    "toe_l": ("toes_l",),
    "shoulder_r": ("r_shoulder_study",),
    "shoulder_l": ("L_shoulder_study",),
}

# Markerless TRC: the foot index is between the medial and lateral toe points.
_TRC_MARKERS: dict[str, tuple[str, ...]] = {
    "hip_r": ("hip_r",),
    "hip_l": ("hip_l",),
    "knee_r": ("knee_r",),
    "knee_l": ("knee_l",),
    "ankle_r": ("ankle_r",),
    "ankle_l": ("ankle_l",),
    "heel_r": ("heel_r",),
    "heel_l": ("heel_l",),
    "toe_r": ("mtoe_r", "ltoe_r"),
    "toe_l": ("mtoe_l", "ltoe_l"),
    "shoulder_r": ("shoulder_r",),
    "shoulder_l": ("shoulder_l",),
    "nose": ("nose",),
}


@dataclass(frozen=True)
class Skeleton3D:
    """3D joint centres over time, in metres, in the recording's own axes.

    ``up`` is the unit vector of the vertical in those axes (found from the data, not assumed), because
    depth is a height comparison and each capture system picks its own convention.
    """

    name: str
    times: FloatArray  # (T,) seconds
    joints: dict[str, FloatArray]  # name -> (T, 3) metres
    up: FloatArray  # (3,) unit vector
    fps: float

    @property
    def n_frames(self) -> int:
        return int(self.times.shape[0])

    @property
    def up_axis(self) -> int:
        """Index of the coordinate axis that points up (1 for Y-up data)."""
        return int(np.argmax(np.abs(self.up)))

    def thigh_m(self, side: str) -> float:
        """Hip-to-knee centre distance: rigid in the model, so the median is the bone length."""
        return float(
            np.median(np.linalg.norm(self.joints[f"hip_{side}"] - self.joints[f"knee_{side}"], axis=1))
        )

    def shin_m(self, side: str) -> float:
        return float(
            np.median(np.linalg.norm(self.joints[f"knee_{side}"] - self.joints[f"ankle_{side}"], axis=1))
        )


# -- loaders -------------------------------------------------------------------------------------------


def _fill_gaps(a: FloatArray) -> FloatArray:
    """Linear interpolation over NaN samples (occluded markers), per coordinate."""
    out = a.copy()
    idx = np.arange(a.shape[0])
    for c in range(a.shape[1]):
        bad = np.isnan(out[:, c])
        if bad.all():
            raise ValueError("a marker is missing in every frame")
        if bad.any():
            out[bad, c] = np.interp(idx[bad], idx[~bad], out[~bad, c])
    return out


def _detect_up(joints: dict[str, FloatArray]) -> FloatArray:
    """The axis along which the shoulders stand farthest from the ankles, signed: the vertical.

    Checked rather than assumed because mocap systems disagree (Y-up here, Z-up in many labs).
    """
    top = (joints["shoulder_r"] + joints["shoulder_l"]) / 2
    bottom = (joints["ankle_r"] + joints["ankle_l"]) / 2
    d = np.median(top - bottom, axis=0)
    axis = int(np.argmax(np.abs(d)))
    up = np.zeros(3)
    up[axis] = 1.0 if d[axis] > 0 else -1.0
    return up


def _synth_shoulders(joints: dict[str, FloatArray], torso_dir: FloatArray) -> None:
    """Shoulders 0.5 m up the torso from the hip centre, as wide as the hips: a bar proxy when the data
    has no shoulder marker (only the bar-path fault reads them; depth never does)."""
    hip = (joints["hip_r"] + joints["hip_l"]) / 2
    half = (joints["hip_r"] - joints["hip_l"]) / 2
    n = torso_dir / np.linalg.norm(torso_dir, axis=1, keepdims=True)
    joints["shoulder_r"] = hip + 0.5 * n + half
    joints["shoulder_l"] = hip + 0.5 * n - half


def load_trc(path: Path | str) -> Skeleton3D:
    """A ``.trc`` marker file (tab-separated; header of 5 lines; units from the header, mm or m)."""
    path = Path(path)
    lines = path.read_text().splitlines()
    keys = lines[1].split("\t")
    values = lines[2].split("\t")
    header = {k.strip(): v.strip() for k, v in zip(keys, values, strict=False)}
    fps = float(header.get("DataRate", "30"))
    scale = {"mm": 1e-3, "cm": 1e-2, "m": 1.0}[header.get("Units", "mm").lower()]
    names = [n.strip() for n in lines[3].split("\t")[2:] if n.strip()]
    rows = []
    for line in lines[5:]:
        cells = line.split("\t")
        if len(cells) < 2 or not cells[0].strip():
            continue
        cells = cells[: 2 + 3 * len(names)]
        cells += [""] * (2 + 3 * len(names) - len(cells))
        rows.append([float(c) if c.strip() else math.nan for c in cells])
    data = np.asarray(rows, dtype=np.float64)
    times = data[:, 1]
    markers = {n: data[:, 2 + 3 * i : 5 + 3 * i] * scale for i, n in enumerate(names)}
    joints: dict[str, FloatArray] = {}
    for joint, sources in _TRC_MARKERS.items():
        if all(s in markers for s in sources):
            joints[joint] = _fill_gaps(np.mean([markers[s] for s in sources], axis=0))
    _require(joints, path)
    return Skeleton3D(path.stem, times, joints, _detect_up(joints), fps)


def load_opencap_fk(path: Path | str, fps: float = 30.0) -> Skeleton3D:
    """OpenCap forward-kinematics joint positions (CSV, metres, 100 Hz), resampled to ``fps``.

    Resampled because a camera sees 30 frames a second and the referee's smoothing windows are in
    frames: judging 100 Hz poses would measure a different smoother, not the camera we have.
    """
    path = Path(path)
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader)]
        data = np.asarray([[float(c) for c in row] for row in reader if row], dtype=np.float64)
    col = {h: i for i, h in enumerate(header)}
    t_src = data[:, col["time"]]

    def body(name: str) -> FloatArray | None:
        keys = [f"{name}_{a}" for a in "xyz"]
        if not all(k in col for k in keys):
            return None
        return np.stack([data[:, col[k]] for k in keys], axis=1)

    src: dict[str, FloatArray] = {}
    for joint, names in _OPENCAP_BODIES.items():
        found = [b for n in names if (b := body(n)) is not None]
        if found:
            src[joint] = np.mean(found, axis=0)
    if "shoulder_r" not in src or "shoulder_l" not in src:
        pelvis, torso = body("pelvis"), body("torso")
        if pelvis is None or torso is None:
            raise ValueError(f"{path}: no shoulder markers and no pelvis/torso to place them")
        _synth_shoulders(src, torso - pelvis)
    times = np.arange(t_src[0], t_src[-1] + 1e-9, 1.0 / fps)
    joints = {
        k: np.stack([np.interp(times, t_src, v[:, c]) for c in range(3)], axis=1) for k, v in src.items()
    }
    _require(joints, path)
    return Skeleton3D(path.stem, times, joints, _detect_up(joints), fps)


# UI-PRMD Vicon deep squats: 39 unnamed points a frame (x, y, z mm, z up, x forward, y to the left).
# The lower-body points, identified from standing heights and left/right pairs (their README) and
# checked here: 23/24 left/right ASIS, 25/26 left/right PSIS (17-19 cm behind the ASIS), 28/34 lateral
# knee, 30/36 lateral ankle, 31/37 heel, 32/38 toe (ahead of the heel along +x), 9/16 left/right
# shoulder (at C7 height, point 4).
_PRMD_POINTS = {
    "asis_l": 23,
    "asis_r": 24,
    "psis_l": 25,
    "psis_r": 26,
    "knee_l": 28,
    "knee_r": 34,
    "ankle_l": 30,
    "ankle_r": 36,
    "heel_l": 31,
    "heel_r": 37,
    "toe_l": 32,
    "toe_r": 38,
    "shoulder_l": 9,
    "shoulder_r": 16,
}
PRMD_FPS = 100.0
"""Vicon rate of UI-PRMD: the frame-to-frame second differences of the markers are ~0.1 mm, smooth as
100 Hz capture is and 30 Hz would not be, and 100 Hz gives 2-4 s per deep squat."""
PRMD_KNEE_HALF_WIDTH_M = 0.05
"""Lateral knee marker to knee joint centre: half a typical knee width (~9 cm) plus the marker's
radius; the offset is along the knee axis, i.e. horizontal, so the centre's height hardly depends on it."""
PRMD_ANKLE_HALF_WIDTH_M = 0.035
"""Lateral malleolus marker to ankle joint centre (half a typical ankle width plus the marker radius)."""


def _harrington_hips(points: dict[str, FloatArray]) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Hip joint centres from the four pelvis markers by Harrington et al. (2007, J Biomech 40:595),
    the regression on pelvis width PW (ASIS to ASIS) and depth PD (mid-ASIS to mid-PSIS), in mm in the
    pelvis frame (origin mid-ASIS, x forward, y up, z to the side): x = -0.24 PD - 9.9,
    y = -0.30 PW - 10.9, z = ±(0.33 PW + 7.3). Returns (right, left, unit right-lateral axis)."""
    asis_r, asis_l = points["asis_r"], points["asis_l"]
    mid_asis = (asis_r + asis_l) / 2
    mid_psis = (points["psis_r"] + points["psis_l"]) / 2
    lat = asis_r - asis_l
    pw = np.linalg.norm(lat, axis=1, keepdims=True)
    lat = lat / pw
    fwd = mid_asis - mid_psis
    fwd = fwd - np.sum(fwd * lat, axis=1, keepdims=True) * lat
    pd = np.linalg.norm(fwd, axis=1, keepdims=True)
    fwd = fwd / pd
    up = np.cross(lat, fwd)  # right × forward = up
    pw_mm, pd_mm = 1000 * np.median(pw), 1000 * np.median(pd)  # rigid: one pelvis size per subject
    x = (-0.24 * pd_mm - 9.9) / 1000
    y = (-0.30 * pw_mm - 10.9) / 1000
    z = (0.33 * pw_mm + 7.3) / 1000
    base = mid_asis + x * fwd + y * up
    return base + z * lat, base - z * lat, lat


def load_ui_prmd(path: Path | str, fps: float = 30.0, pad_s: float = 1.5) -> Skeleton3D:
    """One UI-PRMD deep squat (``m01_sNN_e01_positions[_inc].txt.gz``, 100 Hz), resampled to ``fps``.

    Joint centres: hips by the Harrington regression on the pelvis markers; knees and ankles moved
    from the lateral markers towards the body's midline along the pelvis's left-right axis. The files
    are cut tightly round one rep, so ``pad_s`` of standing still (the first and last frame held) is
    added at each end: a referee sees the lifter standing before the descent and after the lockout.
    """
    path = Path(path)
    with gzip.open(path, "rt") as fh:
        data = np.loadtxt(fh, delimiter=",", dtype=np.float64)
    raw = data.reshape(data.shape[0], -1, 3) / 1000.0
    pts = {k: _fill_gaps(raw[:, i]) for k, i in _PRMD_POINTS.items()}
    hip_r, hip_l, lat = _harrington_hips(pts)
    lat_h = lat.copy()
    lat_h[:, 2] = 0.0
    lat_h /= np.linalg.norm(lat_h, axis=1, keepdims=True)
    src: dict[str, FloatArray] = {
        "hip_r": hip_r,
        "hip_l": hip_l,
        # ``lat`` points to the lifter's right: the midline is at −lat from the right leg, +lat from the left.
        "knee_r": pts["knee_r"] - PRMD_KNEE_HALF_WIDTH_M * lat_h,
        "knee_l": pts["knee_l"] + PRMD_KNEE_HALF_WIDTH_M * lat_h,
        "ankle_r": pts["ankle_r"] - PRMD_ANKLE_HALF_WIDTH_M * lat_h,
        "ankle_l": pts["ankle_l"] + PRMD_ANKLE_HALF_WIDTH_M * lat_h,
    }
    src |= {k: pts[k] for k in ("heel_r", "heel_l", "toe_r", "toe_l", "shoulder_r", "shoulder_l")}
    t_src = np.arange(raw.shape[0]) / PRMD_FPS
    times = np.arange(0.0, t_src[-1] + 1e-9, 1.0 / fps)
    n_pad = round(pad_s * fps)
    joints = {}
    for k, v in src.items():
        r = np.stack([np.interp(times, t_src, v[:, c]) for c in range(3)], axis=1)
        joints[k] = np.concatenate([np.repeat(r[:1], n_pad, axis=0), r, np.repeat(r[-1:], n_pad, axis=0)])
    all_times = np.arange(joints["hip_r"].shape[0]) / fps
    name = path.name.removesuffix(".txt.gz").replace("_positions", "")
    _require(joints, path)
    return Skeleton3D(f"ui_prmd/{name}", all_times, joints, _detect_up(joints), fps)


def _require(joints: dict[str, FloatArray], path: Path) -> None:
    missing = [j for j in JOINTS if j != "nose" and j not in joints]
    if missing:
        raise ValueError(f"{path}: missing joints {missing}")


def load_recordings(root: Path | str) -> list[Skeleton3D]:
    """Every recording under ``root``: ``**/*.trc``, ``**/*_fk_joint_positions.csv`` and UI-PRMD's
    ``**/m01_*_positions*.txt.gz`` (deep squats only: m01 is UI-PRMD's deep-squat movement)."""
    root = Path(root)
    skels = [load_trc(p) for p in sorted(root.rglob("*.trc"))]
    skels += [load_opencap_fk(p) for p in sorted(root.rglob("*_fk_joint_positions.csv"))]
    skels += [load_ui_prmd(p) for p in sorted(root.rglob("m01_*_positions*.txt.gz"))]
    return skels


# -- the lifter's frame and the truth ------------------------------------------------------------------


def body_axes(skel: Skeleton3D) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(up, lateral → lifter's right, forward), orthonormal, from the data itself.

    Lateral is the mean right-minus-left hip vector made horizontal; forward is up × lateral, turned
    round if the toes point the other way (a mirrored, left-handed recording).
    """
    up = skel.up
    lat = np.mean(skel.joints["hip_r"] - skel.joints["hip_l"], axis=0)
    lat = lat - (lat @ up) * up
    lat = lat / np.linalg.norm(lat)
    fwd = np.cross(up, lat)
    foot = np.mean(
        skel.joints["toe_r"] - skel.joints["heel_r"] + skel.joints["toe_l"] - skel.joints["heel_l"], axis=0
    )
    if foot @ fwd < 0:
        fwd = -fwd
    return up, lat, fwd


def true_margin(skel: Skeleton3D) -> FloatArray:
    """Per frame, (knee centre height − hip centre height) / thigh length, mean of both legs.

    The referee's convention: positive when the hip centre is below the knee centre. Heights are along
    the recording's up axis; the thigh length is each leg's bone length.
    """
    up = skel.up
    per_leg = [
        ((skel.joints[f"knee_{s}"] - skel.joints[f"hip_{s}"]) @ up) / skel.thigh_m(s) for s in ("r", "l")
    ]
    return np.asarray(np.mean(per_leg, axis=0), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class TrueRep:
    start_s: float
    bottom_s: float  # the frame of the deepest true margin
    end_s: float
    margin_thigh: float  # the rep's truth: its largest true margin
    margin_cm: float


def true_extension(skel: Skeleton3D) -> FloatArray:
    """Hip-centre height over the ankle centres in leg lengths: about 0.9-1 standing."""
    hip = (skel.joints["hip_r"] + skel.joints["hip_l"]) / 2
    ankle = (skel.joints["ankle_r"] + skel.joints["ankle_l"]) / 2
    leg = np.mean([skel.thigh_m(s) + skel.shin_m(s) for s in ("r", "l")])
    return np.asarray(((hip - ankle) @ skel.up) / leg, dtype=np.float64)


def true_reps(skel: Skeleton3D, *, start_drop: float = 0.08, min_drop: float = 0.2) -> list[TrueRep]:
    """The reps the 3D data holds: dips of the hips of at least ``min_drop`` leg lengths below standing.

    Found on the 3D truth with its own thresholds, independent of the referee's segmentation, so a rep
    the referee misses counts as missed. Standing is the 90th percentile of the extension.
    """
    ext = true_extension(skel)
    margin = true_margin(skel)
    standing = float(np.percentile(ext, 90))
    down = ext < standing - start_drop
    reps: list[TrueRep] = []
    i = 0
    n = len(ext)
    thigh = np.mean([skel.thigh_m(s) for s in ("r", "l")])
    while i < n:
        if not down[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and down[j + 1]:
            j += 1
        if ext[i : j + 1].min() < standing - min_drop:
            b = i + int(np.argmax(margin[i : j + 1]))
            m = float(margin[b])
            reps.append(
                TrueRep(
                    float(skel.times[i]),
                    float(skel.times[b]),
                    float(skel.times[j]),
                    m,
                    float(100 * m * thigh),
                )
            )
        i = j + 1
    return reps


# -- the camera ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Camera:
    """A pinhole camera: world point P maps to R (P − centre), then f·x/z + cx, f·y/z + cy."""

    rotation: FloatArray  # (3, 3) rows: camera x (right), y (down), z (forward) in the recording's axes
    centre: FloatArray  # (3,)
    focal_px: float
    width: int
    height: int

    def to_camera(self, points: FloatArray) -> FloatArray:
        return np.asarray((points - self.centre) @ self.rotation.T, dtype=np.float64)

    def pixels(self, cam: FloatArray) -> FloatArray:
        z = np.maximum(cam[..., 2:3], 1e-6)
        return np.asarray(
            cam[..., :2] / z * self.focal_px + np.array([self.width / 2, self.height / 2]), dtype=np.float64
        )


def place_camera(
    skel: Skeleton3D,
    *,
    yaw_deg: float,
    pitch_deg: float = 10.0,
    distance_m: float = 4.0,
    height_m: float = 1.0,
    focal_px: float = 1400.0,
    size: tuple[int, int] = (1920, 1080),
) -> Camera:
    """A camera ``distance_m`` (horizontally) from the lifter's mean hip position, ``yaw_deg`` round from
    the lifter's front towards their right (0 = facing them, 90 = side on, negative = their left), aimed
    at the point ``height_m`` above the floor over that position and tilted down by ``pitch_deg``.

    The camera is aimed, not just tilted, because an operator frames the lifter: so its own height is
    ``height_m + distance_m·tan(pitch)`` (level at hip height for pitch 0, above the lifter when pitched).
    """
    up, lat, fwd = body_axes(skel)
    hip = (skel.joints["hip_r"] + skel.joints["hip_l"]) / 2
    feet = np.concatenate([skel.joints[j] @ up for j in ("heel_r", "heel_l", "toe_r", "toe_l")])
    floor = float(np.percentile(feet, 1))
    centre = np.median(hip, axis=0)
    centre = centre - (centre @ up) * up
    aim = centre + (floor + height_m) * up
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    towards_camera = math.cos(yaw) * fwd + math.sin(yaw) * lat
    position = aim + distance_m * towards_camera + distance_m * math.tan(pitch) * up
    z = aim - position
    z = z / np.linalg.norm(z)
    y = -up - (-up @ z) * z
    y = y / np.linalg.norm(y)
    x = np.cross(y, z)
    return Camera(np.stack([x, y, z]), position, focal_px, size[0], size[1])


def project(
    skel: Skeleton3D,
    *,
    yaw_deg: float,
    pitch_deg: float = 10.0,
    distance_m: float = 4.0,
    height_m: float = 1.0,
    focal_px: float = 1400.0,
    size: tuple[int, int] = (1920, 1080),
    noise_px: float = 0.0,
    drop_rate: float = 0.0,
    seed: int = 0,
    start_us: int = 0,
    world_z_noise_m: float = 0.0,
    world_z_scale: float = 1.0,
) -> list[PoseFrame]:
    """The poses a BlazePose-like model would give of this skeleton from a camera (see :func:`place_camera`).

    - keypoints: pixels of the joints the referee uses, with Gaussian noise of ``noise_px``; visibility
      0.95 on the near side and ``0.95 − 0.5·|sin yaw|`` on the far side (the model hedges on a leg hidden
      behind the other), 0.05 outside the image, 0 for landmarks the data does not have;
    - world: the joints in the camera's axes (x right, y down, z away), hip-centred, metres, with the same
      noise back-projected — the referee reads the view's yaw from the world hip axis. The model's depth
      (z) is far worse than its x/y, so ``world_z_noise_m`` adds independent Gaussian noise to each
      joint's z every frame (then re-centred on the hips), and ``world_z_scale`` squashes (< 1) or
      stretches all depths, as a model that under-reads depth does;
    - ``drop_rate`` of frames (chosen by ``seed``) carry no person at all, as when detection fails.
    """
    cam = place_camera(
        skel,
        yaw_deg=yaw_deg,
        pitch_deg=pitch_deg,
        distance_m=distance_m,
        height_m=height_m,
        focal_px=focal_px,
        size=size,
    )
    rng = np.random.default_rng(seed)
    names = [j for j in JOINTS if j in skel.joints]
    idx = np.array([BLAZEPOSE_INDEX[j] for j in names])
    pts = np.stack([skel.joints[j] for j in names], axis=1)  # (T, J, 3)
    cam_pts = cam.to_camera(pts)
    px = cam.pixels(cam_pts)
    far = NEAR_SIDE_VIS - FAR_SIDE_VIS_DROP * abs(math.sin(math.radians(yaw_deg)))
    near_side = "_r" if yaw_deg >= 0 else "_l"
    base_vis = np.array(
        [NEAR_SIDE_VIS if j.endswith(near_side) or j == "nose" else far for j in names], dtype=np.float64
    )
    hip_cols = [names.index("hip_r"), names.index("hip_l")]
    dropped = rng.random(skel.n_frames) < drop_rate
    frames: list[PoseFrame] = []
    for t in range(skel.n_frames):
        noise = rng.normal(0.0, noise_px, size=(len(names), 2)) if noise_px > 0 else np.zeros((len(names), 2))
        capture_us = start_us + round(float(skel.times[t]) * 1e6)
        if dropped[t]:
            frames.append(PoseFrame(capture_us, t, cam.width, cam.height, None, None, 0.0, None, "mocap"))
            continue
        hip_cam = cam_pts[t, hip_cols].mean(axis=0)
        kp = np.zeros((NUM_BLAZEPOSE_LANDMARKS, 4))
        world = np.zeros((NUM_BLAZEPOSE_LANDMARKS, 3))
        hip_px = px[t, hip_cols].mean(axis=0)
        kp[:, :2] = hip_px  # landmarks the data lacks sit at the hips, invisible
        xy = px[t] + noise
        inside = (xy[:, 0] >= 0) & (xy[:, 0] < cam.width) & (xy[:, 1] >= 0) & (xy[:, 1] < cam.height)
        kp[idx, :2] = xy
        kp[idx, 2] = (cam_pts[t, :, 2] - hip_cam[2]) * focal_px / hip_cam[2]
        kp[idx, 3] = np.where(inside & (cam_pts[t, :, 2] > 0), base_vis, 0.05)
        metres_per_px = hip_cam[2] / focal_px
        world[idx] = cam_pts[t] - hip_cam
        world[idx, :2] += noise * metres_per_px
        if world_z_noise_m > 0 or world_z_scale != 1.0:
            z = world[idx, 2] * world_z_scale
            if world_z_noise_m > 0:
                z = z + rng.normal(0.0, world_z_noise_m, size=len(names))
            world[idx, 2] = z - z[hip_cols].mean()
        frames.append(PoseFrame(capture_us, t, cam.width, cam.height, kp, world, 0.9, 1, "mocap"))
    return frames


# -- evaluation ----------------------------------------------------------------------------------------


def truth_status(margin_thigh: float) -> str:
    """ "below", "above", or "borderline" within :data:`BORDERLINE_THIGH` of parallel."""
    if margin_thigh > BORDERLINE_THIGH:
        return "below"
    if margin_thigh < -BORDERLINE_THIGH:
        return "above"
    return "borderline"


def _match(bottoms: Sequence[float], reps: Sequence[TrueRep]) -> dict[int, int]:
    """Decision index -> true rep index, nearest bottoms first, each used once, within the window."""
    pairs = sorted(
        (abs(b - r.bottom_s), i, k)
        for i, b in enumerate(bottoms)
        for k, r in enumerate(reps)
        if abs(b - r.bottom_s) <= MATCH_WINDOW_S
    )
    used_d: set[int] = set()
    used_r: set[int] = set()
    out: dict[int, int] = {}
    for _, i, k in pairs:
        if i not in used_d and k not in used_r:
            out[i] = k
            used_d.add(i)
            used_r.add(k)
    return out


def _stats(values: Iterable[float]) -> dict[str, float | int | None]:
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        return {"n": 0, "mean": None, "median_abs": None, "p90_abs": None}
    a = np.abs(v)
    return {
        "n": int(v.size),
        "mean": round(float(v.mean()), 4),
        "median_abs": round(float(np.median(a)), 4),
        "p90_abs": round(float(np.percentile(a, 90)), 4),
    }


def judge_projection(
    skel: Skeleton3D, reps: Sequence[TrueRep], config: RefereeConfig, **camera: Any
) -> tuple[list[dict[str, Any]], int]:
    """Project, judge, match: one row per true rep (status "missed" when no attempt matched it), and
    the count of attempts that matched no true rep."""
    frames = project(skel, **camera)
    decisions = Referee(0, config).run(frames)
    bottoms = [d.bottom_us / 1e6 for d in decisions]
    matched = _match(bottoms, reps)
    by_rep = {k: i for i, k in matched.items()}
    thigh_cm = 100 * float(np.mean([skel.thigh_m(s) for s in ("r", "l")]))
    rows = []
    for k, rep in enumerate(reps):
        row: dict[str, Any] = {
            "recording": skel.name,
            "rep": k + 1,
            "true_margin_thigh": round(rep.margin_thigh, 4),
            "true_margin_cm": round(rep.margin_cm, 2),
            "truth": truth_status(rep.margin_thigh),
            "thigh_cm": round(thigh_cm, 1),
            **{key: camera.get(key) for key in ("yaw_deg", "pitch_deg", "distance_m", "noise_px", "seed")},
            "status": "missed",
            "margin_thigh": None,
            "error_thigh": None,
            "error_cm": None,
            "yaw_est_deg": None,
            "bottom_error_s": None,
        }
        if k in by_rep:
            d = decisions[by_rep[k]].depth
            row["status"] = d.status
            row["confidence"] = d.confidence
            row["yaw_est_deg"] = d.view_yaw_deg
            row["bottom_error_s"] = round(bottoms[by_rep[k]] - rep.bottom_s, 3)
            if d.margin_thigh is not None:
                err = d.margin_thigh - rep.margin_thigh
                row.update(
                    margin_thigh=d.margin_thigh, error_thigh=round(err, 4), error_cm=round(err * thigh_cm, 2)
                )
        rows.append(row)
    return rows, len(decisions) - len(matched)


def evaluate_mocap(
    root: Path | str,
    yaws: Sequence[float] = (0, 15, 20, 30, 45, 60, 75, 90),
    pitches: Sequence[float] = (0, 15),
    distances: Sequence[float] = (3, 6),
    noise_px: Sequence[float] = (0, 2),
    drop_rate: float = 0.1,
    seeds: Sequence[int] = (0, 1),
    *,
    config: RefereeConfig | None = None,
    focal_px: float = 1400.0,
    size: tuple[int, int] = (1920, 1080),
    world_z_noise_m: float = 0.0,
    world_z_scale: float = 1.0,
) -> dict[str, Any]:
    """Judge every recording under ``root`` from every camera of the grid and score it against the truth.

    Each (recording, yaw, pitch, distance, noise, seed) is one projection, judged by a fresh
    :class:`Referee` with the centre rule (``surface_offset_thigh=0``, since the truth is joint centres).
    Returns the recordings and their true reps, one row per true rep per camera, and per-yaw summaries.
    """
    config = config or RefereeConfig(surface_offset_thigh=0.0)
    skels = load_recordings(root)
    if not skels:
        raise FileNotFoundError(f"no .trc or *_fk_joint_positions.csv recordings under {root}")
    recordings = []
    rows: list[dict[str, Any]] = []
    extra: dict[float, int] = {float(y): 0 for y in yaws}
    runs: dict[float, int] = {float(y): 0 for y in yaws}
    for skel in skels:
        reps = true_reps(skel)
        recordings.append(
            {
                "name": skel.name,
                "fps": skel.fps,
                "frames": skel.n_frames,
                "up_axis": "XYZ"[skel.up_axis],
                "thigh_cm": round(100 * float(np.mean([skel.thigh_m(s) for s in ("r", "l")])), 1),
                "reps": [
                    {
                        "bottom_s": round(r.bottom_s, 2),
                        "margin_thigh": round(r.margin_thigh, 3),
                        "margin_cm": round(r.margin_cm, 1),
                        "truth": truth_status(r.margin_thigh),
                    }
                    for r in reps
                ],
            }
        )
        for yaw in yaws:
            for pitch in pitches:
                for dist in distances:
                    for noise in noise_px:
                        for seed in seeds:
                            got, n_extra = judge_projection(
                                skel,
                                reps,
                                config,
                                yaw_deg=float(yaw),
                                pitch_deg=float(pitch),
                                distance_m=float(dist),
                                noise_px=float(noise),
                                drop_rate=drop_rate,
                                seed=int(seed),
                                focal_px=focal_px,
                                size=size,
                                world_z_noise_m=world_z_noise_m,
                                world_z_scale=world_z_scale,
                            )
                            rows.extend(got)
                            extra[float(yaw)] += n_extra
                            runs[float(yaw)] += 1
    by_yaw = {
        y: summarize([r for r in rows if r["yaw_deg"] == y]) | {"runs": runs[y], "extra": extra[y]}
        for y in runs
    }
    by_yaw_pitch = {
        f"{y:g}/{p:g}": summarize([r for r in rows if r["yaw_deg"] == y and r["pitch_deg"] == float(p)])
        for y in runs
        for p in pitches
    }
    by_yaw_distance = {
        f"{y:g}/{d:g}": summarize([r for r in rows if r["yaw_deg"] == y and r["distance_m"] == float(d)])
        for y in runs
        for d in distances
    }
    by_yaw_noise = {
        f"{y:g}/{n:g}": summarize([r for r in rows if r["yaw_deg"] == y and r["noise_px"] == float(n)])
        for y in runs
        for n in noise_px
    }
    sources = list(dict.fromkeys(_source(s.name) for s in skels))
    by_recording = {
        src: summarize([r for r in rows if _source(r["recording"]) == src and r["yaw_deg"] >= 45])
        for src in sources
    }
    by_source_yaw = {
        f"{src}|{y:g}": summarize([r for r in rows if _source(r["recording"]) == src and r["yaw_deg"] == y])
        for src in sources
        for y in runs
    }
    near_parallel = {
        y: summarize(
            [
                r
                for r in rows
                if r["recording"].startswith("ui_prmd/")
                and r["yaw_deg"] == y
                and abs(r["true_margin_cm"]) < NEAR_PARALLEL_CM
            ]
        )
        for y in runs
    }
    judged = [
        Judged(
            r["confidence"],
            (r["margin_thigh"] > 0) == (r["true_margin_thigh"] > 0),
            r["status"] != "undecided",
        )
        for r in rows
        if r.get("margin_thigh") is not None and r.get("confidence") is not None
    ]
    return {
        "reliability": reliability_table(judged),
        "grid": {
            "yaws": list(yaws),
            "pitches": list(pitches),
            "distances": list(distances),
            "noise_px": list(noise_px),
            "drop_rate": drop_rate,
            "seeds": list(seeds),
            "focal_px": focal_px,
            "size": list(size),
            "surface_offset_thigh": config.surface_offset_thigh,
            "perspective_correction": config.perspective_correction,
            "min_side_view_yaw_deg": config.min_side_view_yaw_deg,
            "world_z_noise_m": world_z_noise_m,
            "world_z_scale": world_z_scale,
            "borderline_thigh": BORDERLINE_THIGH,
        },
        "recordings": recordings,
        "by_yaw": by_yaw,
        "by_yaw_pitch": by_yaw_pitch,
        "by_yaw_distance": by_yaw_distance,
        "by_yaw_noise": by_yaw_noise,
        "by_recording_yaw45plus": by_recording,
        "by_source_yaw": by_source_yaw,
        "ui_prmd_near_parallel": near_parallel,
        "rows": rows,
    }


def _source(name: str) -> str:
    """The data set a recording belongs to: UI-PRMD's 20 files count as one source."""
    return name.split("/", 1)[0] if "/" in name else name


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Counts of calls against the truth and the margin error's statistics for a set of rep rows."""
    clear = [r for r in rows if r["truth"] != "borderline"]
    border = [r for r in rows if r["truth"] == "borderline"]
    yaw_est = [r["yaw_est_deg"] for r in rows if r["yaw_est_deg"] is not None]
    return {
        "true_reps": len(rows),
        "found": sum(r["status"] != "missed" for r in rows),
        "clear": {
            "n": len(clear),
            "correct": sum(r["status"] == r["truth"] for r in clear),
            "wrong": sum(r["status"] in ("below", "above") and r["status"] != r["truth"] for r in clear),
            "undecided": sum(r["status"] == "undecided" for r in clear),
            "missed": sum(r["status"] == "missed" for r in clear),
        },
        "borderline": {
            s: sum(r["status"] == s for r in border) for s in ("below", "above", "undecided", "missed")
        },
        "error_thigh": _stats(r["error_thigh"] for r in rows if r["error_thigh"] is not None),
        "error_cm": _stats(r["error_cm"] for r in rows if r["error_cm"] is not None),
        "yaw_est_deg": round(float(np.median(yaw_est)), 1) if yaw_est else None,
    }


def format_mocap_table(result: dict[str, Any]) -> str:
    """Markdown: per camera yaw, reps found, calls against the truth, and the margin's error."""
    g = result["grid"]
    out = [
        "| yaw ° | est. yaw ° | reps found | unmatched attempts | "
        "clear reps: right / wrong / undecided / missed | "
        "borderline: below / above / undecided | mean err (thigh) | median abs | p90 abs | "
        "mean err (cm) | median abs cm | p90 abs cm |",
        "|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for yaw, s in result["by_yaw"].items():
        c, b, et, ec = s["clear"], s["borderline"], s["error_thigh"], s["error_cm"]
        out.append(
            f"| {yaw:g} | {_num(s['yaw_est_deg'], 1)} | {s['found']}/{s['true_reps']} | {s['extra']} | "
            f"{c['correct']} / {c['wrong']} / {c['undecided']} / {c['missed']} (of {c['n']}) | "
            f"{b['below']} / {b['above']} / {b['undecided']} | "
            f"{_num(et['mean'], 3, sign=True)} | {_num(et['median_abs'], 3)} | {_num(et['p90_abs'], 3)} | "
            f"{_num(ec['mean'], 1, sign=True)} | {_num(ec['median_abs'], 1)} | {_num(ec['p90_abs'], 1)} |"
        )
    out.append("")
    out.append(
        f"Grid per recording and yaw: pitches {g['pitches']}°, distances {g['distances']} m, noise "
        f"{g['noise_px']} px, seeds {g['seeds']}, {g['drop_rate']:.0%} frames dropped; focal "
        f"{g['focal_px']:g} px, {g['size'][0]}×{g['size'][1]}; centre rule (surface offset "
        f"{g['surface_offset_thigh']:g}); borderline = |truth| ≤ {g['borderline_thigh']} thigh; "
        f"perspective correction {'on' if g['perspective_correction'] else 'off'}, "
        f"min side-view yaw {g['min_side_view_yaw_deg']:g}°; world z noise {g['world_z_noise_m']:g} m, "
        f"world z scale {g['world_z_scale']:g}."
    )
    return "\n".join(out)


def format_breakdown(result: dict[str, Any], key: str, label: str) -> str:
    """Markdown: the margin error's mean and median |error| by yaw and a second grid axis."""
    cells: dict[str, dict[str, Any]] = result[key]
    seconds = sorted({k.split("/")[1] for k in cells}, key=float)
    head = " | ".join(f"{label} {s}: mean / median abs (thigh) · right/clear" for s in seconds)
    out = [f"| yaw ° | {head} |", "|---:|" + "---|" * len(seconds)]
    for yaw in result["by_yaw"]:
        parts = []
        for s in seconds:
            c = cells[f"{yaw:g}/{s}"]
            e = c["error_thigh"]
            parts.append(
                f"{_num(e['mean'], 3, sign=True)} / {_num(e['median_abs'], 3)} · "
                f"{c['clear']['correct']}/{c['clear']['n']}"
            )
        out.append(f"| {yaw:g} | " + " | ".join(parts) + " |")
    return "\n".join(out)


def format_yaw_rows(by_yaw: dict[float, dict[str, Any]]) -> str:
    """Markdown: per yaw, calls against the truth and the margin error in cm."""
    out = [
        "| yaw ° | reps | clear: right / wrong / undecided / missed | "
        "borderline: below / above / undecided | mean err cm | median abs cm | p90 abs cm |",
        "|---:|---:|---|---|---:|---:|---:|",
    ]
    for yaw, s in by_yaw.items():
        c, b, ec = s["clear"], s["borderline"], s["error_cm"]
        out.append(
            f"| {yaw:g} | {s['true_reps']} | "
            f"{c['correct']} / {c['wrong']} / {c['undecided']} / {c['missed']} | "
            f"{b['below']} / {b['above']} / {b['undecided']} | {_num(ec['mean'], 1, sign=True)} | "
            f"{_num(ec['median_abs'], 1)} | {_num(ec['p90_abs'], 1)} |"
        )
    return "\n".join(out)


def format_source_yaw(result: dict[str, Any]) -> str:
    """Markdown: per source (UI-PRMD as one) and yaw, mean / median |err| / p90 |err| cm, wrong, undecided."""
    cells: dict[str, dict[str, Any]] = result["by_source_yaw"]
    sources = list(dict.fromkeys(k.split("|")[0] for k in cells))
    yaws = list(result["by_yaw"])
    out = [
        "| source | " + " | ".join(f"{y:g}°" for y in yaws) + " |",
        "|---|" + "---|" * len(yaws),
    ]
    for src in sources:
        parts = []
        for y in yaws:
            c = cells[f"{src}|{y:g}"]
            e = c["error_cm"]
            parts.append(
                f"{_num(e['mean'], 1, sign=True)} / {_num(e['median_abs'], 1)} / {_num(e['p90_abs'], 1)}"
                f" · w{c['clear']['wrong']} u{c['clear']['undecided'] + c['borderline']['undecided']}"
            )
        out.append(f"| {src} | " + " | ".join(parts) + " |")
    out.append("")
    out.append(
        "Cell: mean / median |err| / p90 |err| (cm) · w = wrong calls on clear reps, "
        "u = undecided (all reps)."
    )
    return "\n".join(out)


def _num(v: float | None, digits: int, sign: bool = False) -> str:
    if v is None:
        return "–"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def format_report(result: dict[str, Any]) -> str:
    """The per-yaw table, the recordings' truth, and the breakdowns by pitch, distance and recording."""
    recs = [
        f"| {r['name']} | {r['frames']} @ {r['fps']:g} fps | {r['up_axis']} | {r['thigh_cm']} | "
        + ", ".join(f"{x['margin_cm']:+.1f} ({x['truth']})" for x in r["reps"])
        + " |"
        for r in result["recordings"]
    ]
    by_rec = [
        f"| {name} | {s['found']}/{s['true_reps']} | {s['clear']['correct']}/{s['clear']['n']} | "
        f"{s['clear']['wrong']} | {s['clear']['undecided']} | {s['clear']['missed']} | "
        f"{s['borderline']['below']} / {s['borderline']['above']} / {s['borderline']['undecided']} / "
        f"{s['borderline']['missed']} | {_num(s['error_thigh']['mean'], 3, sign=True)} | "
        f"{_num(s['error_cm']['mean'], 1, sign=True)} | {_num(s['error_cm']['median_abs'], 1)} |"
        for name, s in result["by_recording_yaw45plus"].items()
    ]
    return "\n".join(
        [
            "### Margin error and calls per camera yaw",
            "",
            format_mocap_table(result),
            "",
            "### Recordings (true margin per rep, cm; + = hip centre below knee centre)",
            "",
            "| recording | frames | up | thigh cm | reps |",
            "|---|---|---|---:|---|",
            *recs,
            "",
            "### By yaw and camera pitch",
            "",
            format_breakdown(result, "by_yaw_pitch", "pitch"),
            "",
            "### By yaw and camera distance",
            "",
            format_breakdown(result, "by_yaw_distance", "distance"),
            "",
            "### By yaw and pixel noise",
            "",
            format_breakdown(result, "by_yaw_noise", "noise px"),
            "",
            "### UI-PRMD reps nearest parallel (|true margin| < 3 cm), per yaw",
            "",
            format_yaw_rows(result["ui_prmd_near_parallel"]),
            "",
            "### By source and yaw",
            "",
            format_source_yaw(result),
            "",
            "### By recording (yaws ≥ 45° only)",
            "",
            "| recording | found | clear right | wrong | undecided | missed | borderline b / a / u / m | "
            "mean err (thigh) | mean err cm | median abs cm |",
            "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|",
            *by_rec,
        ]
    )


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m meetvar.mocap ../shared/data/mocap``: print the report (or the full JSON)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("root", type=Path)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--no-perspective", action="store_true", help="judge with the plain image margin")
    parser.add_argument(
        "--min-yaw", type=float, default=None, help="override min_side_view_yaw_deg (0: measure every view)"
    )
    parser.add_argument("--world-z-noise-m", type=float, default=0.0, help="noise on each world z, metres")
    parser.add_argument("--world-z-scale", type=float, default=1.0, help="scale of the world depths")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    args = parser.parse_args(argv)
    # The correction's own threshold (20°) when it is on; the default's (35°) when it is off.
    config = RefereeConfig(
        surface_offset_thigh=0.0,
        perspective_correction=not args.no_perspective,
        min_side_view_yaw_deg=RefereeConfig().min_side_view_yaw_deg if args.no_perspective else 20.0,
    )
    if args.min_yaw is not None:
        config = replace(config, min_side_view_yaw_deg=args.min_yaw)
    result = evaluate_mocap(
        args.root,
        seeds=tuple(range(args.seeds)),
        config=config,
        world_z_noise_m=args.world_z_noise_m,
        world_z_scale=args.world_z_scale,
    )
    print(json.dumps(result, indent=1) if args.json else format_report(result))


if __name__ == "__main__":
    main()
