"""Signal helpers shared by segmentation and depth: smoothing and visibility-aware landmark reads."""

from __future__ import annotations

import numpy as np
from scipy.signal import savgol_filter

from referee.keypoints import BlazePoseLandmark as L
from referee.keypoints import FloatArray, PoseFrame


def smooth(series: FloatArray, window: int, order: int = 2) -> FloatArray:
    """Savitzky-Golay smoothing along axis 0.

    Chosen over a moving average because a quadratic fit keeps the depth of the bottom: an average
    of a V-shaped signal raises its minimum, which would bias every call towards "above".
    """
    n = series.shape[0]
    w = min(window, n if n % 2 == 1 else n - 1)
    if w <= order:
        return series.astype(np.float64, copy=True)
    return np.asarray(savgol_filter(series, w, order, axis=0, mode="interp"), dtype=np.float64)


def point(frame: PoseFrame, idx: int, min_visibility: float) -> FloatArray | None:
    """A landmark's image (x, y), or None when the model says it is not visible."""
    kp = frame.keypoints
    if kp is None or kp[idx, 3] < min_visibility:
        return None
    return kp[idx, :2]


def midpoint(frame: PoseFrame, left: int, right: int, min_visibility: float) -> FloatArray | None:
    """Visibility-weighted midpoint of a left/right pair; one visible side is enough."""
    kp = frame.keypoints
    if kp is None:
        return None
    w = np.array([kp[left, 3], kp[right, 3]])
    w = np.where(w >= min_visibility, w, 0.0)
    if w.sum() <= 0:
        return None
    return np.asarray((kp[left, :2] * w[0] + kp[right, :2] * w[1]) / w.sum(), dtype=np.float64)


def hip_height_px(frame: PoseFrame, min_visibility: float) -> float | None:
    """Vertical pixels from the ankles up to the hips: falls as the lifter squats, in any view."""
    hip = midpoint(frame, L.LEFT_HIP, L.RIGHT_HIP, min_visibility)
    ankle = midpoint(frame, L.LEFT_ANKLE, L.RIGHT_ANKLE, min_visibility)
    if hip is None or ankle is None:
        return None
    return float(ankle[1] - hip[1])
