"""Combining calls the way a platform does: several cameras into one system call, three referees'
lights into one decision, and the jury's narrow power over it.

Pure functions over plain dicts, so the live view, the history, the CSV and the tests agree.
"""

from __future__ import annotations

from typing import Any

from referee.fusion import fuse_calls

# The camera-fusion rule is the referee's own, so the live view and the streamed fused call agree.
fuse_cameras = fuse_calls


def lights_majority(lights: dict[str, Any] | None) -> str | None:
    """'good' with two or more white lights, 'no_lift' with two or more red; None until entered."""
    if not lights:
        return None
    values = [lights.get(k) for k in ("left", "head", "right")]
    whites, reds = values.count("good"), values.count("bad")
    if whites >= 2:
        return "good"
    if reds >= 2:
        return "no_lift"
    return None


def is_split(lights: dict[str, Any] | None) -> bool:
    """A 2–1 decision: the only kind the jury may reverse."""
    if not lights:
        return False
    values = [lights.get(k) for k in ("left", "head", "right")]
    return None not in values and values.count("good") in (1, 2)


def official_result(
    lights: dict[str, Any] | None, appeals: list[dict[str, Any]], overrides: list[dict[str, Any]]
) -> dict[str, Any]:
    """What stands: a jury reversal, else the referees' lights, else the latest referee override."""
    majority = lights_majority(lights)
    reversed_ = [a for a in appeals if a["status"] == "reversed"]
    if reversed_ and majority is not None:
        return {"verdict": "no_lift" if majority == "good" else "good", "by": "jury"}
    if majority is not None:
        return {"verdict": majority, "by": "referees"}
    if overrides:
        return {"verdict": overrides[-1]["verdict"], "by": "override"}
    return {"verdict": None, "by": None}
