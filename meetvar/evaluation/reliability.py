"""Is the confidence a probability? Confidence bins against how often the calls in them were right.

A decision's ``confidence`` claims to be the probability that its call (or, when too close to call, its
lean) is right. This groups judged reps by that number and counts how many were right, on labelled
footage (the label says which side of the line the rep was) and on projected 3D motion capture (the
3D truth says it). A well-calibrated referee's observed accuracy sits in or above each bin.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

BINS: tuple[tuple[float, float], ...] = (
    (0.5, 0.6),
    (0.6, 0.7),
    (0.7, 0.8),
    (0.8, 0.9),
    (0.9, 0.95),
    (0.95, 0.99),
    (0.99, 1.0001),
)


@dataclass(frozen=True, slots=True)
class Judged:
    """One rep: the stated confidence, whether the lean (sign of the margin) was right, and if the
    call was made at all (not "too close to call")."""

    confidence: float
    right: bool
    decided: bool
    source: str = ""


def table(reps: Iterable[Judged]) -> list[dict[str, Any]]:
    rows = []
    reps = list(reps)
    for low, high in BINS:
        inside = [r for r in reps if low <= r.confidence < high]
        if not inside:
            rows.append({"bin": f"{low:.2f}–{min(high, 1.0):.2f}", "n": 0})
            continue
        decided = [r for r in inside if r.decided]
        rows.append(
            {
                "bin": f"{low:.2f}–{min(high, 1.0):.2f}",
                "n": len(inside),
                "mean_confidence": round(sum(r.confidence for r in inside) / len(inside), 3),
                "observed_accuracy": round(sum(r.right for r in inside) / len(inside), 3),
                "decided": len(decided),
                "decided_right": sum(r.right for r in decided),
            }
        )
    return rows


def format_table(rows: list[dict[str, Any]], title: str) -> str:
    lines = [
        f"### {title}",
        "",
        "| confidence | reps | mean confidence | observed accuracy | decided (right) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        if not r["n"]:
            lines.append(f"| {r['bin']} | 0 | – | – | – |")
            continue
        lines.append(
            f"| {r['bin']} | {r['n']} | {r['mean_confidence']:.3f} | {r['observed_accuracy']:.3f} "
            f"| {r['decided']} ({r['decided_right']}) |"
        )
    return "\n".join(lines)
