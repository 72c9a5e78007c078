"""The rule's own surfaces, read off the lifter's silhouette instead of shifted joint centres.

The IPF rule compares "the top surface of the legs at the hip joint" with "the top of the knees". A pose
model gives joint centres only, so the referee's default shifts the centres by an offset fitted on
labelled footage. The landmark model also outputs a person mask; on a squat's bottom frames this module
finds, in a side or oblique view, the two surfaces on it:

* **top of the knee**: the highest point of the silhouette's upper edge over the knee, scanning up from
  the knee centre in the columns around it (from a little on the thigh side to the shin side);
* **top surface of the thigh at the hip joint**: the thigh's upper edge, fitted as a straight line over
  the middle of the thigh (where the torso cannot reach down onto it, even folded over the thighs) and
  read at the hip joint's column. Extrapolating the edge is the point: at the hip itself the upper edge
  is hidden in the crease under the torso.

Both are image y coordinates (pixels, down); the referee turns them into a margin. Nothing is returned
when the edge cannot be followed (the mask is absent, the thigh is not seen side-on, the edge is ragged):
the referee then falls back to the centres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
MASK_THRESHOLD = 0.5
THIGH_FIT_SPAN = (0.25, 0.6)  # fractions of the way from the knee to the hip where the edge is fitted
KNEE_COLUMNS = (-0.12, 0.3)  # around the knee, in thigh lengths: towards the hip (−) and the shin (+)
MAX_FIT_RMS = 0.04  # thigh lengths: a ragged edge (clothing, a hand, the bar's plates) is not measured


@dataclass(frozen=True, slots=True)
class Surfaces:
    hip_y: float  # image y of the thigh's top surface at the hip joint
    knee_y: float  # image y of the top of the knee
    fit_rms_px: float


def crop_matrix(cx: float, cy: float, side_w: float, side_h: float, rotation: float, size: int) -> F64:
    """Image → crop pixel homography of the landmark model's square crop (as ``imaging.warp`` cuts it)."""
    src = cv2.boxPoints(((cx, cy), (side_w, side_h), rotation * 180.0 / math.pi)).astype(np.float32)
    dst = np.array([[0, size], [0, 0], [size, 0], [size, size]], dtype=np.float32)
    return np.asarray(cv2.getPerspectiveTransform(src, dst), dtype=np.float64)


def _sample(mask: F64, to_mask: F64, xs: F64, ys: F64) -> F64:
    """Bilinear mask values at image points (0 outside the crop)."""
    pts = np.stack([xs, ys, np.ones_like(xs)], axis=-1) @ to_mask.T
    u, v = pts[..., 0] / pts[..., 2], pts[..., 1] / pts[..., 2]
    h, w = mask.shape
    u0, v0 = np.floor(u - 0.5), np.floor(v - 0.5)
    fu, fv = u - 0.5 - u0, v - 0.5 - v0
    out = np.zeros_like(u)
    for dv, wv in ((0, 1 - fv), (1, fv)):
        for du, wu in ((0, 1 - fu), (1, fu)):
            r, c = (v0 + dv).astype(int), (u0 + du).astype(int)
            ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
            out += np.where(ok, mask[np.clip(r, 0, h - 1), np.clip(c, 0, w - 1)], 0.0) * wu * wv
    return out


def _edge_above(mask: F64, to_mask: F64, x: F64, y_from: F64, reach: float, step: float) -> F64:
    """Per column, the image y where the silhouette ends scanning up from ``y_from`` (NaN if never)."""
    offsets = np.arange(0.0, reach, step)
    ys = y_from[:, None] - offsets[None, :]
    vals = _sample(mask, to_mask, np.broadcast_to(x[:, None], ys.shape), ys)
    inside = vals >= MASK_THRESHOLD
    out = np.full(x.shape, np.nan)
    for i in range(x.shape[0]):
        if not inside[i, 0]:
            continue
        gone = np.flatnonzero(~inside[i])
        if gone.size == 0:
            continue
        j = int(gone[0])
        # Interpolate the 0.5 crossing between the last inside and the first outside sample.
        a, b = vals[i, j - 1], vals[i, j]
        frac = (a - MASK_THRESHOLD) / (a - b) if a != b else 0.0
        out[i] = ys[i, j - 1] - frac * step
    return out


def thigh_surfaces(
    mask: F64, image_to_mask: F64, hip: tuple[float, float], knee: tuple[float, float], thigh_px: float
) -> Surfaces | None:
    """The two surfaces of the rule on one frame's person mask (probabilities, any resolution).

    ``image_to_mask`` maps image pixels to mask pixels (a 3×3 homography); ``hip``/``knee`` are the
    joint centres of the leg nearer the camera, in image pixels; ``thigh_px`` the unforeshortened thigh.
    """
    if thigh_px <= 0 or not np.isfinite(thigh_px):
        return None
    hx, hy = hip
    kx, ky = knee
    dx = hx - kx
    if abs(dx) < 0.5 * thigh_px:
        return None  # the thigh points at the camera: its top edge is not a profile here
    toward_shin = -math.copysign(1.0, dx)
    step = max(0.25, thigh_px / 200.0)
    reach = 0.9 * thigh_px
    # Thigh top edge over the middle of the thigh: scan up from the centre line.
    t = np.linspace(*THIGH_FIT_SPAN, 16)
    xs = kx + t * dx
    centre_y = ky + t * (hy - ky)
    edge = _edge_above(mask, image_to_mask, xs, centre_y, reach, step)
    ok = np.isfinite(edge)
    if ok.sum() < 8:
        return None
    coef = np.polyfit(xs[ok], edge[ok], 1)
    resid = edge[ok] - np.polyval(coef, xs[ok])
    rms = float(np.sqrt(np.mean(resid**2)))
    if rms > MAX_FIT_RMS * thigh_px:
        return None
    hip_y = float(np.polyval(coef, hx))
    # Top of the knee: the highest edge point in the columns around the knee.
    offs = np.linspace(KNEE_COLUMNS[0], KNEE_COLUMNS[1], 15) * thigh_px * toward_shin
    kxs = kx + offs
    kedge = _edge_above(mask, image_to_mask, kxs, np.full_like(kxs, ky), reach, step)
    if np.isfinite(kedge).sum() < 5:
        return None
    knee_y = float(np.nanmin(kedge))
    return Surfaces(hip_y=hip_y, knee_y=knee_y, fit_rms_px=rms)
