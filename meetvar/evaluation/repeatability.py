"""Does the same footage give the same call? Each clip is judged K times, started 0…K−1 frames later.

A call that changes because the camera started one frame later cannot settle an appeal, so this is
measured per labelled rep: the spread of the margin over the starts (max − min, decided runs only), and
whether the status flipped between "below" and "above". A rep missed or undecided in some starts
is reported too: "undecided" sometimes and decided other times is a softer kind of instability.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class RepRun:
    """One start's call for one labelled rep (``status`` "missed" when no attempt matched)."""

    status: str
    margin_cm: float | None


@dataclass(frozen=True, slots=True)
class RepRepeatability:
    file: str
    rep: int
    label: str
    confidence: str
    view: str
    runs: tuple[RepRun, ...]

    @property
    def statuses(self) -> list[str]:
        return [r.status for r in self.runs]

    @property
    def flipped(self) -> bool:
        """Both "below" and "above" among the starts: the call itself changed."""
        return {"below", "above"} <= set(self.statuses)

    @property
    def status_changed(self) -> bool:
        return len(set(self.statuses)) > 1

    @property
    def spread_cm(self) -> float | None:
        """Max − min of the margin over the starts that measured one (decided or not)."""
        margins = [r.margin_cm for r in self.runs if r.margin_cm is not None]
        return round(max(margins) - min(margins), 3) if len(margins) >= 2 else None

    @property
    def decided_in_all(self) -> bool:
        return all(s in ("below", "above") for s in self.statuses)


def summarise(reps: list[RepRepeatability], confidences: tuple[str, ...] = ("H", "M")) -> dict[str, Any]:
    """The figures the issue asks for: flips, and the margin spread of reps decided in every start."""
    rows = [r for r in reps if r.confidence in confidences]
    spreads = [s for r in rows if (s := r.spread_cm) is not None]
    decided = [s for r in rows if r.decided_in_all and (s := r.spread_cm) is not None]
    return {
        "confidences": list(confidences),
        "reps": len(rows),
        "flips": sum(r.flipped for r in rows),
        "status_changes": sum(r.status_changed for r in rows),
        "spread_cm_median_all": round(statistics.median(spreads), 3) if spreads else None,
        "spread_cm_worst_all": round(max(spreads), 3) if spreads else None,
        "decided_reps": len(decided),
        "spread_cm_median_decided": round(statistics.median(decided), 3) if decided else None,
        "spread_cm_worst_decided": round(max(decided), 3) if decided else None,
    }


def format_repeatability(reps: list[RepRepeatability]) -> str:
    lines = [f"{'file':<36} {'rep':>3} {'label':<12} {'c':<2} {'spread':>7}  calls (margin cm) per start"]
    for r in reps:
        spread = "" if r.spread_cm is None else f"{r.spread_cm:.2f}"
        calls = "  ".join(
            f"{run.status}" + ("" if run.margin_cm is None else f" {run.margin_cm:+.1f}") for run in r.runs
        )
        flag = "  FLIP" if r.flipped else ""
        lines.append(f"{r.file:<36} {r.rep:>3} {r.label:<12} {r.confidence:<2} {spread:>7}  {calls}{flag}")
    return "\n".join(lines)
