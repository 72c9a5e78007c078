"""A metric scale from a competition plate: find the plate's rim as an ellipse in a luma frame.

IPF calibrated plates (and bumper plates) are 450 mm across. In a side view a plate shows as a nearly
circular disk, in an oblique view as an ellipse whose **major axis** is still (under weak perspective)
the true diameter, so ``major / 45`` is the frame's scale in px per cm *at the plate's distance*.

How it works (all in one call, pure, no state; the random sampling is seeded, so the same frame
always gives the same answer):

1. Crop a region around ``near`` (the shoulders' midpoint: the bar sits there and the plate's centre
   is within about one diameter of it) big enough to hold a plate of the largest expected size, and
   shrink it so that such a plate is about ``WORK_DIAMETER`` px across.
2. Sobel gradients and Canny edges.
3. Centre votes: pairs of edge points with parallel gradients whose chord is not far from their
   normal are the ends of a diameter of any ellipse they lie on, so their midpoints pile up at a
   plate's centre whatever its size, shape or occlusion (a bar, an arm or a body over the rim only
   removes votes). The strongest peaks near ``near`` are the candidate centres.
4. Around each centre, rings by RANSAC (a centred conic has three unknowns: one edge point with its
   gradient and a second point fix it), first at the working scale, then again at full resolution,
   where each ring is pulled onto its rim and its concentric copies backed by edges are added (a
   plate's rim, raised lip and hub are concentric, and the lip can be found first).
5. Each candidate is refitted (``cv2.fitEllipseDirect``) to the full-resolution edge points within a
   pixel or two of it whose gradient is normal to it. ``support`` is the fraction of the whole
   perimeter (parts outside the frame count as missing) with such an edge under it; ``residual_px``
   the RMS geometric distance of those edge points. A fit is kept only with ``support >= MIN_SUPPORT``,
   a small residual, a contrast of one sign along most of it (``MIN_POLARITY``) and a major axis in
   ``expect_diameter_px``; of concentric survivors the outermost wins (the plate's edge, not its lip).

Caveat for the caller: a plate is not in the lifter's sagittal plane. In a side view the near plate is
about 0.65 m closer to the camera than the lifter's midline and the far plate as much further away,
so each one's scale is off by that distance ratio (about ±20 % with the camera 3 m away). If both
plates are measured, the scale at the midline is the harmonic mean of the two (:func:`midline_px_per_cm`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

PLATE_DIAMETER_CM = 45.0
MIN_SUPPORT = 0.6
# Largest accepted RMS distance of the rim's edge points from the fit: this fraction of the major axis,
# but never asked below MIN_RESIDUAL_PX (edges are located to about a pixel).
MAX_RESIDUAL_FRAC = 0.012
MIN_RESIDUAL_PX = 1.0
MIN_AXIS_RATIO = 0.3  # minor / major: flatter than this is not a plate the camera can measure
WORK_DIAMETER = 100.0  # the largest expected plate is shrunk to about this many px for the search
SEARCH_RADIUS = 1.1  # the plate's centre is within this many (largest) diameters of ``near``
MAX_CENTRES = 2  # plate centres examined at full resolution
MAX_REFINE = 4  # rims refitted per centre
MIN_POLARITY = 0.8  # a rim's contrast keeps its sign (a dark plate: darker inside) on this much of it
NORMAL_COS = 0.85  # |cos| between the gradient and the ellipse's normal for an edge to back the rim


@dataclass(frozen=True, slots=True)
class PlateFit:
    """A plate's rim in the full frame (pixels; angle in degrees, of the major axis from +x towards +y)."""

    centre: tuple[float, float]  # px in the full frame
    axes: tuple[float, float]  # full major, minor axis lengths, px
    angle_deg: float
    px_per_cm: float  # major axis / 45.0 (the major axis is the true diameter under perspective)
    support: float  # fraction of the ellipse perimeter backed by image edges, 0..1
    residual_px: float  # RMS geometric fit residual of the edge points, px


@dataclass(frozen=True, slots=True)
class _Ellipse:
    cx: float
    cy: float
    a: float  # semi-major
    b: float  # semi-minor
    theta: float  # radians, direction of the major axis

    @staticmethod
    def from_points(pts: F64) -> _Ellipse | None:
        if len(pts) < 6:
            return None
        try:
            (cx, cy), (w, h), ang = cv2.fitEllipseDirect(pts.astype(np.float32))
        except cv2.error:
            return None
        if not (math.isfinite(w) and math.isfinite(h) and math.isfinite(cx) and math.isfinite(cy)):
            return None
        if w <= 0 or h <= 0:
            return None
        theta = math.radians(ang)
        if h > w:
            w, h = h, w
            theta += math.pi / 2
        return _Ellipse(float(cx), float(cy), float(w) / 2, float(h) / 2, theta % math.pi)

    def scaled(self, s: float, dx: float, dy: float) -> _Ellipse:
        """Coordinates ``p * s + (dx, dy)``."""
        return _Ellipse(self.cx * s + dx, self.cy * s + dy, self.a * s, self.b * s, self.theta)

    def distance(self, x: F64, y: F64) -> tuple[F64, F64, F64]:
        """Approximate (first-order) geometric distance of points to the ellipse and the ellipse's unit
        normal direction (nx, ny) at each point's level set."""
        c, s = math.cos(self.theta), math.sin(self.theta)
        dx, dy = x - self.cx, y - self.cy
        u = dx * c + dy * s
        v = -dx * s + dy * c
        a2, b2 = self.a * self.a, self.b * self.b
        f = u * u / a2 + v * v / b2 - 1.0
        gu, gv = 2.0 * u / a2, 2.0 * v / b2
        gn = np.hypot(gu, gv) + 1e-12
        d = np.abs(f) / gn
        nx = (gu * c - gv * s) / gn
        ny = (gu * s + gv * c) / gn
        return d, nx, ny

    def samples(self, n: int) -> tuple[F64, F64, F64, F64]:
        """``n`` points spread evenly in parameter over the perimeter, with their unit normals."""
        t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
        c, s = math.cos(self.theta), math.sin(self.theta)
        ct, st = np.cos(t), np.sin(t)
        u, v = self.a * ct, self.b * st
        x = self.cx + u * c - v * s
        y = self.cy + u * s + v * c
        gu, gv = ct / self.a, st / self.b
        gn = np.hypot(gu, gv)
        nx = (gu * c - gv * s) / gn
        ny = (gu * s + gv * c) / gn
        return x, y, nx, ny

    def perimeter(self) -> float:
        a, b = self.a, self.b
        h = ((a - b) / (a + b)) ** 2
        return math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))


@dataclass(slots=True)
class _Edges:
    """Canny edge points of a (cropped, possibly shrunk) image with their unit gradient directions."""

    x: F64
    y: F64
    gx: F64
    gy: F64
    mask: npt.NDArray[np.uint8]  # the edge map dilated by one pixel (support lookups)
    dirx: npt.NDArray[np.float32]  # unit gradient, per pixel
    diry: npt.NDArray[np.float32]
    edges: npt.NDArray[np.uint8]


def _edges(img: npt.NDArray[np.uint8]) -> _Edges:
    blur = cv2.GaussianBlur(img, (5, 5), 1.2)
    dx = cv2.Sobel(blur, cv2.CV_16S, 1, 0, ksize=3)
    dy = cv2.Sobel(blur, cv2.CV_16S, 0, 1, ksize=3)
    # Canny's high threshold from the region's contrast (a dim basement or a bright gym alike).
    contrast = float(np.abs(dx[::3, ::3]).mean() + np.abs(dy[::3, ::3]).mean())
    high = max(48.0, 2.0 * contrast)
    edges = cv2.Canny(dx, dy, 0.4 * high, high, L2gradient=False)
    fx = dx.astype(np.float32)
    fy = dy.astype(np.float32)
    norm = cv2.magnitude(fx, fy) + 1e-6
    dirx = fx / norm
    diry = fy / norm
    ys, xs = np.nonzero(edges)
    return _Edges(
        x=xs.astype(np.float64),
        y=ys.astype(np.float64),
        gx=dirx[ys, xs].astype(np.float64),
        gy=diry[ys, xs].astype(np.float64),
        mask=np.asarray(cv2.dilate(edges, np.ones((3, 3), np.uint8)), np.uint8),
        dirx=dirx,
        diry=diry,
        edges=np.asarray(edges, np.uint8),
    )


ORIENT_BINS = 36  # edge orientations (mod 180°) are paired within 5° bins
MAX_PER_BIN = 40  # edge points per orientation bin that take part in the centre vote
MAX_PEAKS = 2  # centre-vote peaks examined
RANSAC_SAMPLES = 48
MAX_VOTERS = 160  # edge points per centre peak that the ring RANSAC looks at


@functools.lru_cache(maxsize=MAX_PER_BIN + 1)
def _pairs_of(n: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    a, b = np.triu_indices(n, 1)
    return a.astype(np.int64), b.astype(np.int64)


def _symmetric_pairs(
    ed: _Edges, dmin: float, dmax: float
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Pairs of edge points with parallel gradients whose chord is not far from their normal: on an
    ellipse these are the ends of a diameter, so their midpoint is the centre. Returns the two ends'
    indices into ``ed``'s points."""
    empty = np.empty(0, np.int64)
    if len(ed.x) < 2:
        return empty, empty
    orient = np.arctan2(ed.gy, ed.gx) % math.pi
    bins = np.minimum((orient * (ORIENT_BINS / math.pi)).astype(np.int64), ORIENT_BINS - 1)
    order = np.argsort(bins, kind="stable")
    counts = np.bincount(bins, minlength=ORIENT_BINS)
    starts = np.concatenate([[0], np.cumsum(counts)])
    i1s: list[npt.NDArray[np.int64]] = []
    i2s: list[npt.NDArray[np.int64]] = []
    for k in range(ORIENT_BINS):
        idx = order[starts[k] : starts[k + 1]]
        if len(idx) < 2:
            continue
        if len(idx) > MAX_PER_BIN:
            idx = idx[np.linspace(0, len(idx) - 1, MAX_PER_BIN).astype(np.int64)]
        a, b = _pairs_of(len(idx))
        i1s.append(idx[a])
        i2s.append(idx[b])
    if not i1s:
        return empty, empty
    i1 = np.concatenate(i1s)
    i2 = np.concatenate(i2s)
    dx = ed.x[i2] - ed.x[i1]
    dy = ed.y[i2] - ed.y[i1]
    d = np.hypot(dx, dy)
    ok = (d >= dmin) & (d <= dmax)
    # |cos(chord, normal)| >= 0.5 holds on an ellipse with b/a >= 0.3 and never on a straight edge.
    ok &= np.abs(dx * ed.gx[i1] + dy * ed.gy[i1]) >= 0.5 * d
    return i1[ok], i2[ok]


def _centred_conic(u: F64, v: F64) -> tuple[float, float, float] | None:
    """Least-squares ``A u² + B uv + C v² = 1`` (an ellipse centred at the origin)."""
    m = np.stack([u * u, u * v, v * v], axis=1)
    try:
        sol, *_ = np.linalg.lstsq(m, np.ones(len(u)), rcond=None)
    except np.linalg.LinAlgError:
        return None
    return float(sol[0]), float(sol[1]), float(sol[2])


def _conic_ellipse(cx: float, cy: float, abc: tuple[float, float, float]) -> _Ellipse | None:
    a_, b_, c_ = abc
    if a_ <= 0 or c_ <= 0 or 4 * a_ * c_ - b_ * b_ <= 0:
        return None
    w, vecs = np.linalg.eigh(np.array([[a_, b_ / 2], [b_ / 2, c_]]))
    if w[0] <= 0:
        return None
    # The smallest eigenvalue belongs to the major axis.
    semi_major, semi_minor = 1.0 / math.sqrt(w[0]), 1.0 / math.sqrt(w[1])
    theta = math.atan2(vecs[1, 0], vecs[0, 0]) % math.pi
    return _Ellipse(cx, cy, semi_major, semi_minor, theta)


def _rings(
    px: F64,
    py: F64,
    nx: F64,
    ny: F64,
    cx: float,
    cy: float,
    rng: np.random.Generator,
    tol: float = 1.5,
    free_centre: bool = False,
) -> list[_Ellipse]:
    """Up to two concentric ellipses (a plate's rim, its raised lip, its hub...) through edge points
    that are ends of diameters through (cx, cy), with unit gradients (nx, ny). RANSAC: a centred conic
    ``A u² + B uv + C v² = 1`` has three unknowns, so one point with its normal and a second point fix
    it; each ring's points are removed before the next is sought."""
    if len(px) > MAX_VOTERS:
        keep = rng.choice(len(px), MAX_VOTERS, replace=False)
        px, py, nx, ny = px[keep], py[keep], nx[keep], ny[keep]
    u_all, v_all = px - cx, py - cy
    rings: list[_Ellipse] = []
    alive = np.ones(len(u_all), bool)
    for _ in range(2):
        idx = np.flatnonzero(alive)
        n = len(idx)
        if n < 8:
            break
        u, v, gx, gy = u_all[idx], v_all[idx], nx[idx], ny[idx]
        i = rng.integers(0, n, size=RANSAC_SAMPLES)
        j = rng.integers(0, n, size=RANSAC_SAMPLES)
        m = np.stack(
            [
                np.stack([u[i] ** 2, u[i] * v[i], v[i] ** 2], axis=1),
                np.stack([2 * u[i] * gy[i], v[i] * gy[i] - u[i] * gx[i], -2 * v[i] * gx[i]], axis=1),
                np.stack([u[j] ** 2, u[j] * v[j], v[j] ** 2], axis=1),
            ],
            axis=1,
        )  # (S, 3, 3)
        rhs = np.array([1.0, 0.0, 1.0])
        det = np.linalg.det(m)
        scale = np.abs(m).max(axis=(1, 2)) ** 3 + 1e-30
        good = np.abs(det) > 1e-9 * scale
        if not np.any(good):
            break
        sol = np.linalg.solve(m[good], np.broadcast_to(rhs, (int(good.sum()), 3))[:, :, None])[:, :, 0]
        a_, b_, c_ = sol[:, 0:1], sol[:, 1:2], sol[:, 2:3]
        q = a_ * u * u + b_ * u * v + c_ * v * v  # (S', n)
        r = np.hypot(u, v)
        err = np.abs(np.sqrt(np.abs(q)) - 1.0) * r
        tx, ty = 2 * a_ * u + b_ * v, b_ * u + 2 * c_ * v
        cos = np.abs(tx * gx + ty * gy) / (np.hypot(tx, ty) + 1e-12)
        valid = (sol[:, 0] > 0) & (sol[:, 2] > 0) & (4 * sol[:, 0] * sol[:, 2] > sol[:, 1] ** 2)
        inl = (err <= tol) & (q > 0) & (cos >= 0.9)
        score = np.where(valid, inl.sum(axis=1), -1)
        best = int(np.argmax(score))
        if score[best] < 8:
            break
        sel = inl[best]
        if free_centre:  # the centre was only approximate: fit all five parameters to the ring
            e = _Ellipse.from_points(np.stack([u[sel] + cx, v[sel] + cy], axis=1))
        else:
            abc = _centred_conic(u[sel], v[sel])
            e = None if abc is None else _conic_ellipse(cx, cy, abc)
        if e is not None and e.b >= MIN_AXIS_RATIO * e.a:
            rings.append(e)
        alive[idx[sel]] = False
    return rings


def _hypotheses(
    ed: _Edges, lo: float, hi: float, ncx: float, ncy: float, reach: float, rng: np.random.Generator
) -> list[_Ellipse]:
    """Ellipse hypotheses (working-scale px) whose centre is within ``reach`` of (ncx, ncy) and major
    axis in about [lo, hi]: centre votes from diameter ends, then rings around each vote peak."""
    h, w = ed.mask.shape
    i1, i2 = _symmetric_pairs(ed, MIN_AXIS_RATIO * 0.85 * lo, 1.1 * hi)
    if len(i1) == 0:
        return []
    x1, y1, x2, y2 = ed.x[i1], ed.y[i1], ed.x[i2], ed.y[i2]
    mx, my = (x1 + x2) / 2, (y1 + y2) / 2
    ix, iy = np.rint(mx).astype(np.int64), np.rint(my).astype(np.int64)
    ok = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h) & (np.hypot(mx - ncx, my - ncy) <= reach)
    if not np.any(ok):
        return []
    votes = np.bincount(iy[ok] * w + ix[ok], minlength=h * w).reshape(h, w).astype(np.float32)
    acc = np.asarray(cv2.GaussianBlur(votes, (0, 0), 1.5), np.float32)
    peaks = (acc >= cv2.dilate(acc, np.ones((7, 7), np.uint8))) & (acc > 0)
    py, px = np.nonzero(peaks)
    if len(px) == 0:
        return []
    order = np.argsort(-acc[py, px])[:MAX_PEAKS]
    out: list[_Ellipse] = []
    for k in order:
        cx, cy = float(px[k]), float(py[k])
        near_peak = np.hypot(mx - cx, my - cy) <= 2.5
        if np.count_nonzero(near_peak) < 6:
            continue
        cx, cy = float(mx[near_peak].mean()), float(my[near_peak].mean())
        pts = np.unique(np.concatenate([i1[near_peak], i2[near_peak]]))
        for ring in _rings(ed.x[pts], ed.y[pts], ed.gx[pts], ed.gy[pts], cx, cy, rng):
            # Any ring places the centre; its shape scaled to the size range stands for the rim here
            # (the rims themselves are sought again at full resolution).
            r = min(max(ring.a, 0.85 * lo / 2), 1.15 * hi / 2) / ring.a
            out.append(_Ellipse(ring.cx, ring.cy, ring.a * r, ring.b * r, ring.theta))
    return out


def _levels(e: _Ellipse, ed: _Edges, amin: float, amax: float) -> list[_Ellipse]:
    """Concentric copies of ``e`` (same centre, shape and angle: a plate's rim, lip and hub in one
    view) with semi-major axis in [amin, amax] at the levels where many edge points lie whose gradient
    is normal to the copy through them; the strongest three."""
    c, s = math.cos(e.theta), math.sin(e.theta)
    dx, dy = ed.x - e.cx, ed.y - e.cy
    u = dx * c + dy * s
    v = -dx * s + dy * c
    ru, rv = u / (e.a * e.a), v / (e.b * e.b)
    level = np.sqrt(u * ru + v * rv) * e.a  # the semi-major axis of the copy through the point
    sel = (level >= amin - 1.0) & (level <= amax + 1.0)
    if not np.any(sel):
        return []
    nx, ny = ru * c - rv * s, ru * s + rv * c
    cos = np.abs(nx * ed.gx + ny * ed.gy) / (np.hypot(nx, ny) + 1e-12)
    sel &= cos >= 0.9
    lo_bin = math.floor(amin) - 1
    nbins = math.ceil(amax) + 2 - lo_bin
    hist = np.bincount(np.rint(level[sel] - lo_bin).astype(np.int64), minlength=nbins)[:nbins].astype(float)
    sm = np.convolve(hist, [1.0, 2.0, 1.0], mode="same") / 4.0
    peak = (sm >= np.roll(sm, 1)) & (sm > np.roll(sm, -1)) & (sm > 0)
    peak[0] = peak[-1] = False
    out: list[_Ellipse] = []
    for k in np.flatnonzero(peak)[np.argsort(-sm[peak])][:3]:
        w = hist[k - 1 : k + 2]
        at = lo_bin + k + float(np.dot(w, [-1.0, 0.0, 1.0]) / max(w.sum(), 1e-9))
        # Worth a look only when edges cover a fair part of its perimeter (about one edge px per px).
        if hist[k - 1 : k + 2].sum() < 0.25 * 2 * math.pi * at * (1 + e.b / e.a) / 2:
            continue
        if amin <= at <= amax:
            r = at / e.a
            out.append(_Ellipse(e.cx, e.cy, e.a * r, e.b * r, e.theta))
    return out


def _support(e: _Ellipse, ed: _Edges) -> float:
    """Fraction of the perimeter with an edge under it (±1 px) whose gradient is normal to the rim."""
    n = int(min(720, max(90, e.perimeter())))
    x, y, nx, ny = e.samples(n)
    h, w = ed.mask.shape
    xi = np.rint(x).astype(np.int64)
    yi = np.rint(y).astype(np.int64)
    inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    xi, yi, nxi, nyi = xi[inside], yi[inside], nx[inside], ny[inside]
    on = ed.mask[yi, xi] > 0
    cos = np.abs(ed.dirx[yi, xi] * nxi + ed.diry[yi, xi] * nyi)
    return float(np.count_nonzero(on & (cos >= NORMAL_COS))) / n


def _polarity(e: _Ellipse, ed: _Edges) -> float:
    """Of the backed perimeter, the fraction whose contrast has the majority's sign (darker inside, or
    lighter inside): about 1 along one plate's rim, lower where a fit joins a plate to a head."""
    x, y, nx, ny = e.samples(int(min(720, max(90, e.perimeter()))))
    h, w = ed.mask.shape
    xi = np.rint(x).astype(np.int64)
    yi = np.rint(y).astype(np.int64)
    inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    xi, yi, nxi, nyi = xi[inside], yi[inside], nx[inside], ny[inside]
    dot = ed.dirx[yi, xi] * nxi + ed.diry[yi, xi] * nyi
    backed = (ed.mask[yi, xi] > 0) & (np.abs(dot) >= NORMAL_COS)
    k = int(np.count_nonzero(backed))
    if k == 0:
        return 0.0
    out = int(np.count_nonzero(dot[backed] > 0))
    return max(out, k - out) / k


def _grow(
    e: _Ellipse, ed: _Edges, tol: float, rounds: int, cos_min: float = NORMAL_COS
) -> tuple[_Ellipse, float] | None:
    """Refit ``e`` to every edge point within ``tol`` whose gradient is normal to it; returns the fit and
    the RMS distance of its inliers."""
    # The points that can matter (a band a few tolerances wide), so the rounds look at few points.
    d, _, _ = e.distance(ed.x, ed.y)
    band = d <= 4.0 * tol + 0.05 * e.a
    x, y, gx, gy = ed.x[band], ed.y[band], ed.gx[band], ed.gy[band]
    cur = e
    for k in range(rounds + 1):
        d, nx, ny = cur.distance(x, y)
        inl = (d <= tol) & (np.abs(gx * nx + gy * ny) >= cos_min)
        if np.count_nonzero(inl) < 12:
            return None
        if k == rounds:
            return cur, float(np.sqrt(np.mean(d[inl] ** 2)))
        nxt = _Ellipse.from_points(np.stack([x[inl], y[inl]], axis=1))
        if nxt is None:
            return None
        cur = nxt
    return None


def _plausible(e: _Ellipse, lo: float, hi: float, cx: float, cy: float, reach: float) -> bool:
    major = 2.0 * e.a
    return lo <= major <= hi and e.b >= MIN_AXIS_RATIO * e.a and math.hypot(e.cx - cx, e.cy - cy) <= reach


def _concentric(inner: _Ellipse, outer: _Ellipse) -> bool:
    return math.hypot(inner.cx - outer.cx, inner.cy - outer.cy) <= 0.15 * outer.a and inner.a < 0.97 * outer.a


def measure_plate(
    gray: np.ndarray, near: tuple[float, float] | None, expect_diameter_px: tuple[float, float]
) -> PlateFit | None:
    """Find a 450 mm plate's rim near ``near`` (full-frame px; ``None``: anywhere) whose major axis is in
    ``expect_diameter_px`` (min, max px). ``None`` unless one is backed by edges on at least
    ``MIN_SUPPORT`` of its perimeter with a small residual — never a guess."""
    if gray.ndim != 2 or gray.size == 0:
        raise ValueError(f"measure_plate needs a 2-D luma image, got shape {gray.shape}")
    img = gray if gray.dtype == np.uint8 else np.clip(gray, 0, 255).astype(np.uint8)
    lo, hi = float(min(expect_diameter_px)), float(max(expect_diameter_px))
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi < 8.0 or lo <= 0:
        return None
    fh, fw = img.shape

    # 1. The search region, in full-frame px, and the working scale.
    if near is None:
        x0, y0, x1, y1 = 0, 0, fw, fh
        ncx, ncy, reach = fw / 2.0, fh / 2.0, math.inf
    else:
        ncx, ncy = float(near[0]), float(near[1])
        reach = SEARCH_RADIUS * hi
        half = reach + 0.55 * hi
        x0, y0 = max(0, int(ncx - half)), max(0, int(ncy - half))
        x1, y1 = min(fw, int(ncx + half) + 1), min(fh, int(ncy + half) + 1)
        if x1 - x0 < 8 or y1 - y0 < 8:
            return None
    s = min(1.0, WORK_DIAMETER / hi)
    crop = img[y0:y1, x0:x1]
    small = crop
    if s < 1.0:
        # Halve with pyrDown (fast, low-passed) while it can, then a bilinear step; s becomes exact.
        while s * crop.shape[0] <= 0.5 * small.shape[0] and min(small.shape) > 16:
            small = cv2.pyrDown(small)
        tw = max(1, round(crop.shape[1] * s))
        th = max(1, round(crop.shape[0] * s))
        small = cv2.resize(small, (tw, th), interpolation=cv2.INTER_LINEAR)
        s = tw / crop.shape[1]
    ed = _edges(small)
    # Work-scale coordinates -> full frame: p / s + (x0, y0) (pixel centres, INTER_AREA keeps them close).
    inv = 1.0 / s
    off_x = x0 + 0.5 * inv - 0.5
    off_y = y0 + 0.5 * inv - 0.5

    def full(e: _Ellipse) -> _Ellipse:
        return e.scaled(inv, off_x, off_y)

    # 2-3. Hypotheses from centre votes.
    margin_lo, margin_hi = 0.85 * lo, 1.15 * hi
    rng = np.random.default_rng(0)  # deterministic: the same frame always gives the same answer
    hyps = _hypotheses(ed, lo * s, hi * s, (ncx - off_x) * s, (ncy - off_y) * s, (reach + 0.2 * hi) * s, rng)
    if not hyps:
        return None

    # 4. Rank by support at the working scale; the best centres go on to full resolution.
    scored = sorted(
        (
            (_support(e, ed), full(e))
            for e in hyps
            if _plausible(full(e), margin_lo, margin_hi, ncx, ncy, reach)
        ),
        key=lambda t: -t[0],
    )
    centres: list[list[_Ellipse]] = []
    for sup, fe in scored:
        if sup < 0.75 * MIN_SUPPORT:
            break
        for group in centres:
            if math.hypot(fe.cx - group[0].cx, fe.cy - group[0].cy) < 0.1 * group[0].a:
                if len(group) < 3 and not any(_same(fe, g) for g in group):
                    group.append(fe)
                break
        else:
            if len(centres) < MAX_CENTRES:
                centres.append([fe])
    if not centres:
        return None

    # 5. At full resolution, around each centre: the working-scale rims and the rims found again there
    #    (ring spacing is then resolved), each refitted tightly; the outermost well-supported one wins.
    # One full-resolution crop holding every centre's largest rim (the working edges when not shrunk).
    rad = 1.15 * hi / 2 + 6.0
    fx0 = max(0, int(min(g[0].cx for g in centres) - rad))
    fy0 = max(0, int(min(g[0].cy for g in centres) - rad))
    fx1 = min(fw, int(max(g[0].cx for g in centres) + rad) + 1)
    fy1 = min(fh, int(max(g[0].cy for g in centres) + rad) + 1)
    if fx1 - fx0 < 8 or fy1 - fy0 < 8:
        return None
    if s == 1.0:
        fed, fx0, fy0 = ed, x0, y0
    else:
        fed = _edges(img[fy0:fy1, fx0:fx1])
    fits: list[tuple[PlateFit, _Ellipse]] = []
    for group in centres:
        local = [g.scaled(1.0, -fx0, -fy0) for g in group]
        cands: list[_Ellipse] = []
        cx, cy = local[0].cx, local[0].cy
        ux, uy = fed.x - cx, fed.y - cy
        r = np.hypot(ux, uy) + 1e-9
        near_rim = (
            (r >= MIN_AXIS_RATIO * 0.85 * lo / 2)
            & (r <= rad)
            & (np.abs(ux * fed.gx + uy * fed.gy) >= 0.5 * r)
        )
        pts = np.flatnonzero(near_rim)
        # The centre is known to about a working-scale pixel: a loose RANSAC, then each ring pulled
        # onto the nearest rim before its concentric copies are sought.
        for ring0 in _rings(fed.x[pts], fed.y[pts], fed.gx[pts], fed.gy[pts], cx, cy, rng, 3.0, True):
            pulled = _grow(ring0, fed, tol=2.0, rounds=2, cos_min=0.95)
            ring = ring0 if pulled is None else pulled[0]
            if 0.85 * lo / 2 <= ring.a <= 1.15 * hi / 2:
                cands.append(ring)
            cands.extend(_levels(ring, fed, 0.85 * lo / 2, 1.15 * hi / 2))
        cands.extend(local)
        seen: list[tuple[float, _Ellipse]] = []
        for cand in cands:
            if not any(_same(cand, q) for _, q in seen):
                seen.append((_support(cand, fed), cand))
        seen.sort(key=lambda t: -t[0])
        queue = [c for _, c in seen[:MAX_REFINE]]
        grew_out = False
        while queue:
            res = _refine(fed, queue.pop(0))
            if res is None:
                continue
            fit, le = res
            fe2 = le.scaled(1.0, fx0, fy0)
            if not _plausible(fe2, 0.85 * lo, hi, ncx, ncy, reach):
                continue
            if fit.support < MIN_SUPPORT:
                continue
            if fit.residual_px > max(MIN_RESIDUAL_PX, MAX_RESIDUAL_FRAC * fit.axes[0]):
                continue
            if _polarity(le, fed) < MIN_POLARITY:
                continue
            if not grew_out:
                # A precise rim: its larger concentric copies backed by edges (the plate's outer
                # edge, when what was found is its lip) are tried too, once per centre.
                grew_out = True
                queue.extend(_levels(le, fed, 1.03 * le.a, 1.15 * hi / 2)[:2])
            if fe2.a * 2.0 < lo or any(_same(fe2, f[1]) for f in fits):
                continue
            fits.append((dataclasses.replace(fit, centre=(fe2.cx, fe2.cy)), fe2))
    if not fits:
        return None
    best, be = max(fits, key=lambda t: t[0].support)
    outer = [t for t in fits if _concentric(be, t[1])]
    if outer:
        best = max(outer, key=lambda t: t[1].a)[0]
    return best


def _same(a: _Ellipse, b: _Ellipse) -> bool:
    return (
        math.hypot(a.cx - b.cx, a.cy - b.cy) < 0.03 * b.a
        and abs(a.a - b.a) < 0.015 * b.a
        and abs(a.b - b.b) < 0.015 * b.a
    )


def _refine(ed: _Edges, e: _Ellipse) -> tuple[PlateFit, _Ellipse] | None:
    """Refit ``e`` (in ``ed``'s px) to the full-resolution edges; support and residual of the result
    (``centre`` in ``ed``'s px)."""
    g = _grow(e, ed, tol=max(2.0, 0.012 * e.a), rounds=2)
    if g is None:
        return None
    # Then a tight band with a strict normal test, which leaves out the bends where occluders cross.
    g = _grow(g[0], ed, tol=max(1.5, 0.008 * e.a), rounds=2, cos_min=0.95)
    if g is None:
        return None
    le, residual = g
    # Samples off the crop count as missing (the crop holds the whole rim unless the frame cuts it).
    support = _support(le, ed)
    major, minor = 2.0 * le.a, 2.0 * le.b
    fit = PlateFit(
        centre=(le.cx, le.cy),
        axes=(major, minor),
        angle_deg=math.degrees(le.theta) % 180.0,
        px_per_cm=major / PLATE_DIAMETER_CM,
        support=float(min(1.0, support)),
        residual_px=residual,
    )
    return fit, le


def midline_px_per_cm(a: PlateFit, b: PlateFit) -> float:
    """The scale midway between two plates on one bar (the lifter's midline in a side view): the
    harmonic mean of theirs, since px per cm goes as 1 / distance from the camera."""
    return 2.0 / (1.0 / a.px_per_cm + 1.0 / b.px_per_cm)
