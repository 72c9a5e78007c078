"""When the landmark model may skip a frame: the lifter stands tall and still.

A lifter spends most of a meet standing — the walk-out, the wait for the "Squat" signal, the lock-out
hold, the wait for "Rack" — and in those frames the pose does not change. Skipping the landmark
model on every other such frame, and repeating the last pose for it, is the pose service's largest
saving on a CPU (the network is 10 of the ≈13 ms a frame costs there) and gives a GPU more cameras.

What it guarantees, and what it changes:

* Only frames after two inferred frames that show the lifter **standing tall** (hip height above the
  ankles ≥ ``min_extension`` of the leg length) are skipped, so once the hips have dropped below that
  every frame down to the bottom and up to the lock-out is inferred: the depth the referee measures is
  never read from a repeated pose (only the very first frame of a descent can be a repeat).
* Only when the judged joints (shoulders, hips, knees, ankles) moved less than ``max_step`` of the leg
  length per frame between those two frames (1 %: about 9 mm for a 90 cm leg, under BlazePose's own
  frame-to-frame jitter on a still lifter), and **never two frames in a row**, so a repeated pose is
  at most one frame (33 ms at 30 fps) old and the movement that starts in that frame is seen on the
  next one: the start of a descent is found at most one frame later.
* Repeated frames are marked (``extras["reused"] = 1``) so a replay or an audit can tell them apart.
* It does change later poses a little: the tracker places each crop from the previous landmarks, so
  a skipped frame changes the crop history, and BlazePose's output depends on where the crop sits.
  Measured on the labelled footage (docs/benchmarks.md): every call the same, margins moved by a
  median 0.1 cm and at most 2.0 cm — the same spread as starting the same video one or two frames
  later with every frame inferred (up to 2.5 cm on one clip), which is the pose model's own noise
  floor on phone footage and what a live stream gets from whenever its camera starts.
  ``--every-frame`` (``skip_still=False``) turns it off.

The rule reads only the tracker's own output, so the live pose worker and ``meetvar judge`` skip the
same frames and still give identical decisions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

# BlazePose indices: shoulders, hips, knees, ankles — the joints the referee judges with.
JUDGED_JOINTS = (11, 12, 23, 24, 25, 26, 27, 28)
_LEGS = ((23, 25, 27), (24, 26, 28))  # (hip, knee, ankle), left then right


@dataclass
class StillGate:
    """Decides, frame by frame, whether the landmark model can be skipped (see the module doc).

    Feed it every inferred pose with :meth:`observe`; ask :meth:`skip` before each frame; call
    :meth:`reset` when the track is lost.
    """

    max_step: float = 0.01
    min_extension: float = 0.9
    min_visibility: float = 0.5
    _last: tuple[int, F64] | None = field(default=None, init=False)
    _still: bool = field(default=False, init=False)

    def reset(self) -> None:
        self._last = None
        self._still = False

    def skip(self, frame_index: int) -> bool:
        """True when ``frame_index`` may repeat the previous pose: the previous frame was inferred
        (so never two repeats in a row) and it found the lifter standing tall and still."""
        return self._still and self._last is not None and frame_index == self._last[0] + 1

    def observe(self, frame_index: int, keypoints: F64) -> None:
        """An inferred pose: ``(33, ≥4)`` pixels x, y, _, visibility."""
        joints = np.asarray(keypoints[JUDGED_JOINTS, :], dtype=np.float64)
        prev = self._last
        self._last = (int(frame_index), joints)
        self._still = False
        if prev is None or frame_index <= prev[0]:
            return
        leg, extension = _leg_and_extension(keypoints, self.min_visibility)
        if leg is None or extension < self.min_extension:
            return
        seen = (joints[:, 3] >= self.min_visibility) & (prev[1][:, 3] >= self.min_visibility)
        if not np.any(seen):
            return
        step = float(np.max(np.abs(joints[seen, :2] - prev[1][seen, :2]))) / (frame_index - prev[0])
        self._still = step < self.max_step * leg


def _leg_and_extension(keypoints: F64, min_visibility: float) -> tuple[float | None, float]:
    """The longer visible leg (hip–knee + knee–ankle, pixels) and, on that leg, the hip's height above
    the ankle as a fraction of it (1.0 = straight and vertical)."""
    best: tuple[float, float] | None = None
    for hip, knee, ankle in _LEGS:
        if min(keypoints[hip, 3], keypoints[knee, 3], keypoints[ankle, 3]) < min_visibility:
            continue
        thigh = math.hypot(*(keypoints[hip, :2] - keypoints[knee, :2]))
        shin = math.hypot(*(keypoints[knee, :2] - keypoints[ankle, :2]))
        length = thigh + shin
        if length <= 0.0:
            continue
        extension = float(keypoints[ankle, 1] - keypoints[hip, 1]) / length
        if best is None or length > best[0]:
            best = (length, extension)
    return (None, 0.0) if best is None else best
