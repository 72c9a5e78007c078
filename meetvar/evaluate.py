"""``meetvar evaluate``: how often ``judge`` agrees with careful human labels of real footage.

Reps are matched to labelled reps by bottom time (within 0.7 s). Labels ``depth``/``not_depth`` expect
``below``/``above``; ``borderline`` accepts either call; ``unjudgeable`` expects ``undecided``. Scores
count only H and M confidence rows, as the labels file asks; L rows are reported apart.
"""

from __future__ import annotations

import csv
import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meetvar.evaluation.reliability import Judged
from meetvar.evaluation.repeatability import RepRepeatability, RepRun

MATCH_WINDOW_S = 0.7
EXPECTED = {"depth": "below", "not_depth": "above"}


@dataclass(frozen=True, slots=True)
class Label:
    file: str
    rep: int
    bottom_s: float
    label: str
    confidence: str
    view: str


@dataclass
class RowResult:
    label: Label
    status: str  # "below" | "above" | "undecided" | "missed"
    margin_cm: float | None = None
    margin_thigh: float | None = None
    confidence: float | None = None
    bottom_s: float | None = None

    @property
    def decided(self) -> bool:
        return self.status in ("below", "above")

    @property
    def correct(self) -> bool | None:
        """True/False for a decided call on a decidable label, None otherwise."""
        if not self.decided:
            return None
        if self.label.label in EXPECTED:
            return self.status == EXPECTED[self.label.label]
        # Borderline accepts either call; a call on an unjudgeable view is wrong.
        return self.label.label == "borderline"


@dataclass
class Report:
    rows: list[RowResult] = field(default_factory=list)
    extra_attempts: list[tuple[str, float]] = field(default_factory=list)
    # Per later start (1…K−1 frames dropped), the rows of that run: see meetvar.evaluation.repeatability.
    repeats: list[list[RowResult]] = field(default_factory=list)

    def repeatability(self) -> list[RepRepeatability]:
        """Each labelled rep's call in every start, the first start (nothing dropped) first."""
        runs = [self.rows, *self.repeats]
        return [
            RepRepeatability(
                r.label.file,
                r.label.rep,
                r.label.label,
                r.label.confidence,
                r.label.view,
                tuple(RepRun(run[i].status, run[i].margin_cm) for run in runs),
            )
            for i, r in enumerate(self.rows)
        ]

    def summary(self, confidences: tuple[str, ...] = ("H", "M")) -> dict[str, Any]:
        rows = [r for r in self.rows if r.label.confidence in confidences]
        decidable = [r for r in rows if r.label.label in EXPECTED]
        decided = [r for r in decidable if r.decided]
        right = [r for r in decided if r.correct]
        side_oblique = [r for r in decidable if "side" in r.label.view or "oblique" in r.label.view]
        confusion = Counter((r.label.label, r.status) for r in rows)
        return {
            "confidences": list(confidences),
            "rows": len(rows),
            "decidable_rows": len(decidable),
            "decided": len(decided),
            "right": len(right),
            "accuracy_among_decided": round(len(right) / len(decided), 4) if decided else None,
            "right_of_all_decidable": f"{len(right)}/{len(decidable)}",
            "undecided_rate_side_oblique": round(
                sum(not r.decided for r in side_oblique) / len(side_oblique), 4
            )
            if side_oblique
            else None,
            "missed": sum(r.status == "missed" for r in rows),
            "wrong_with_confidence_ge_0_8": sum(
                1 for r in decided if not r.correct and (r.confidence or 0) >= 0.8
            ),
            "confusion": {f"{lab}->{st}": n for (lab, st), n in sorted(confusion.items())},
            "wrong": [
                {
                    "file": r.label.file,
                    "rep": r.label.rep,
                    "label": r.label.label,
                    "call": r.status,
                    "margin_cm": r.margin_cm,
                    "confidence": r.confidence,
                }
                for r in rows
                if r.correct is False
            ],
        }


def judged_reps(rows: list[RowResult], confidences: tuple[str, ...] = ("H", "M")) -> list[Judged]:
    """Labelled reps with a measured margin, for the reliability table: was the lean right?"""
    out = []
    for r in rows:
        if r.label.confidence not in confidences or r.label.label not in EXPECTED:
            continue
        if r.margin_cm is None or r.confidence is None:
            continue
        lean = "below" if r.margin_cm > 0 else "above"
        out.append(Judged(r.confidence, lean == EXPECTED[r.label.label], r.decided, r.label.file))
    return out


def read_labels(path: Path) -> list[Label]:
    with path.open(newline="") as fh:
        return [
            Label(
                row["file"],
                int(row["rep"]),
                float(row["bottom_time_s"]),
                row["label"],
                row["confidence"],
                row["view"],
            )
            for row in csv.DictReader(fh)
        ]


def match(labels: list[Label], attempts: list[dict[str, Any]]) -> tuple[list[RowResult], list[float]]:
    """Greedy nearest-bottom matching, each attempt used at most once."""
    free = list(attempts)
    out = []
    for lab in sorted(labels, key=lambda x: x.bottom_s):
        best = min(free, key=lambda a: abs(a["bottom_s"] - lab.bottom_s), default=None)
        if best is None or abs(best["bottom_s"] - lab.bottom_s) > MATCH_WINDOW_S:
            out.append(RowResult(lab, "missed"))
            continue
        free.remove(best)
        d = best["depth"]
        out.append(
            RowResult(lab, d["status"], d["margin_cm"], d["margin_thigh"], d["confidence"], best["bottom_s"])
        )
    return out, [a["bottom_s"] for a in free]


def evaluate(
    videos: Path,
    labels_csv: Path,
    judge: Callable[[Path, int], dict[str, Any]],
    progress: Callable[[str], None] = lambda _: None,
    repeat: int = 1,
) -> Report:
    """``judge(path, skip_frames)``; with ``repeat`` K, each clip is judged again started 1…K−1 frames
    later and those runs go to ``Report.repeats`` (the scores use the first start only)."""
    labels = read_labels(labels_csv)
    report = Report(repeats=[[] for _ in range(max(1, repeat) - 1)])
    files = sorted({lab.file for lab in labels})
    for i, name in enumerate(files, 1):
        ours = [lab for lab in labels if lab.file == name]
        for skip in range(max(1, repeat)):
            later = f", started {skip} frame{'s' * (skip > 1)} later" if skip else ""
            progress(f"[{i}/{len(files)}] {name}{later}")
            rows, extra = match(ours, judge(videos / name, skip)["attempts"])
            if skip == 0:
                report.rows.extend(rows)
                report.extra_attempts.extend((name, t) for t in extra)
            else:
                report.repeats[skip - 1].extend(rows)
    return report


def format_table(report: Report) -> str:
    lines = [f"{'file':<36} {'rep':>3} {'label':<12} {'conf':<4} {'call':<9} {'margin':>8} {'conf':>5}  ok"]
    for r in report.rows:
        margin = "" if r.margin_cm is None else f"{r.margin_cm:+.1f}"
        conf = "" if r.confidence is None else f"{r.confidence:.2f}"
        ok = {True: "yes", False: "NO", None: "-"}[r.correct]
        lines.append(
            f"{r.label.file:<36} {r.label.rep:>3} {r.label.label:<12} {r.label.confidence:<4} "
            f"{r.status:<9} {margin:>8} {conf:>5}  {ok}"
        )
    return "\n".join(lines)


def fit_offset(samples: list[tuple[str, float, str]], bound: float = 0.3) -> float:
    """The surface offset (thigh lengths) that best separates ``depth`` from ``not_depth`` margins.

    ``samples`` are (video, margin measured with offset 0, label). Among offsets that score best, take
    the middle of the widest interval, so the boundary sits as far from both classes as the data allow.
    """
    margins = sorted({m for _, m, _ in samples})
    cuts = [-bound] + [(a + b) / 2 for a, b in itertools.pairwise(margins)] + [bound]
    cuts = sorted({min(bound, max(-bound, c)) for c in cuts} | {-bound, bound})

    def score(offset: float) -> int:
        return sum((m + offset > 0) == (lab == "depth") for _, m, lab in samples)

    # Candidate offsets are minus the cut points; find the best-scoring contiguous run of them.
    offsets = sorted(-c for c in cuts)
    scores = [score(o) for o in offsets]
    top = max(scores)
    best_run: tuple[float, float] = (offsets[0], offsets[0])
    run_start: int | None = None
    for i, sc in enumerate([*scores, -1]):
        if sc == top and run_start is None:
            run_start = i
        elif sc != top and run_start is not None:
            lo, hi = offsets[run_start], offsets[i - 1]
            if hi - lo >= best_run[1] - best_run[0]:
                best_run = (lo, hi)
            run_start = None
    return (best_run[0] + best_run[1]) / 2


def cross_validate(samples: list[tuple[str, float, str]]) -> dict[str, Any]:
    """Fit on all videos, and leave-one-video-out: each video scored with an offset fitted without it."""
    fitted = fit_offset(samples)
    in_sample = sum((m + fitted > 0) == (lab == "depth") for _, m, lab in samples)
    held_out = 0
    per_video: dict[str, float] = {}
    for video in sorted({v for v, _, _ in samples}):
        train = [s for s in samples if s[0] != video]
        offset = fit_offset(train)
        per_video[video] = round(offset, 4)
        held_out += sum((m + offset > 0) == (lab == "depth") for v, m, lab in samples if v == video)
    return {
        "offset_thigh": round(fitted, 4),
        "fitted_right": f"{in_sample}/{len(samples)}",
        "held_out_right": f"{held_out}/{len(samples)}",
        "held_out_offsets": per_video,
    }
