"""Which detected person is the lifter. BlazePose's pose model sees one person; the detector sees all.

The first time, the detector's most confident person is taken, as MediaPipe does: on a platform camera that
is the lifter, framed large and sharp. Size alone is a poor rule: a squatting lifter's body is smaller than
a loader standing at the bar's end. Once tracked, identity is kept by position: when the track is lost (an
upright or the plates hide the lifter, the pose model loses them in the hole), the candidate nearest where
the lifter was is taken, even if a spotter, a loader or a mirror's reflection is now more confident, as
long as the lifter was seen in the last few seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Candidate:
    """One detected person: hip centre and body radius (the detector's two alignment keypoints), in
    normalised image coordinates scaled so distances are isotropic (x by width/height)."""

    x: float
    y: float
    radius: float
    score: float


@dataclass(frozen=True, slots=True)
class LastSeen:
    x: float
    y: float
    radius: float
    capture_us: int


MEMORY_US = 3_000_000  # a lifter hidden for up to this long is looked for where they were
MAX_JUMP_RADII = 1.0  # how far (in body radii) the lifter can plausibly have moved while hidden


def choose_lifter(candidates: list[Candidate], last: LastSeen | None, now_us: int) -> int | None:
    """Index of the lifter among ``candidates``, or None when there are none."""
    if not candidates:
        return None
    if last is not None and now_us - last.capture_us <= MEMORY_US:
        dist = [math.hypot(c.x - last.x, c.y - last.y) / max(last.radius, 1e-6) for c in candidates]
        nearest = min(range(len(candidates)), key=lambda i: dist[i])
        if dist[nearest] <= MAX_JUMP_RADII:
            return nearest
    # No recent lifter: the detector's most confident person.
    return max(range(len(candidates)), key=lambda i: candidates[i].score)
