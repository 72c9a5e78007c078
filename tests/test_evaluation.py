"""The measures of the referee itself: repeatability over shifted starts, and confidence reliability."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from meetvar.evaluate import evaluate, judged_reps
from meetvar.evaluation.reliability import Judged, table
from meetvar.evaluation.repeatability import RepRepeatability, RepRun, summarise


def _rep(name: str, *runs: tuple[str, float | None], conf: str = "H") -> RepRepeatability:
    return RepRepeatability(name, 1, "depth", conf, "side", tuple(RepRun(s, m) for s, m in runs))


def test_repeatability_counts_flips_and_spreads() -> None:
    steady = _rep("a", ("below", 3.0), ("below", 3.2), ("below", 2.9))
    flipping = _rep("b", ("below", 0.3), ("above", -0.4), ("undecided", 0.1))
    missed = _rep("c", ("below", 5.0), ("missed", None))
    assert steady.spread_cm == 0.3 and not steady.flipped and steady.decided_in_all
    assert flipping.flipped and flipping.spread_cm == 0.7 and not flipping.decided_in_all
    assert missed.status_changed and missed.spread_cm is None
    s = summarise([steady, flipping, missed, _rep("d", ("below", 1.0), ("below", 9.0), conf="L")])
    assert s["reps"] == 3 and s["flips"] == 1 and s["status_changes"] == 2
    assert s["decided_reps"] == 1 and s["spread_cm_worst_decided"] == 0.3
    assert s["spread_cm_worst_all"] == 0.7


def test_evaluate_judges_each_clip_once_per_start(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "file,rep,bottom_time_s,label,confidence,view,load,note\n"
        "a.mp4,1,2.0,depth,H,side,,\n"
        "a.mp4,2,6.0,not_depth,M,side,,\n"
    )
    calls: list[tuple[str, int]] = []

    def judge(path: Path, skip: int) -> dict[str, Any]:
        calls.append((path.name, skip))
        m = 2.0 - skip  # the second start moves the first rep's margin; the third flips it
        return {
            "attempts": [
                {"bottom_s": 2.1, "depth": _depth("below" if m > 0 else "above", m)},
                {"bottom_s": 6.2, "depth": _depth("above", -4.0)},
            ]
        }

    report = evaluate(tmp_path, labels, judge, repeat=3)
    assert calls == [("a.mp4", 0), ("a.mp4", 1), ("a.mp4", 2)]
    reps = report.repeatability()
    assert [r.spread_cm for r in reps] == [2.0, 0.0]
    assert reps[0].flipped and not reps[1].flipped
    assert report.summary()["right"] == 2  # scores use the first start only


def _depth(status: str, margin: float) -> dict[str, Any]:
    return {"status": status, "margin_cm": margin, "margin_thigh": margin / 42, "confidence": 0.97}


def test_reliability_bins_confidence_against_observed_accuracy() -> None:
    reps = [Judged(0.55, True, False), Judged(0.58, False, False), Judged(0.97, True, True)]
    reps += [Judged(0.995, True, True)] * 3
    rows = {r["bin"]: r for r in table(reps)}
    assert rows["0.50–0.60"]["n"] == 2 and rows["0.50–0.60"]["observed_accuracy"] == 0.5
    assert rows["0.95–0.99"]["decided_right"] == 1
    assert rows["0.99–1.00"]["n"] == 3 and rows["0.99–1.00"]["observed_accuracy"] == 1.0
    assert rows["0.70–0.80"]["n"] == 0


def test_labelled_reps_score_the_lean_of_too_close_calls(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "file,rep,bottom_time_s,label,confidence,view,load,note\n"
        "a.mp4,1,2.0,depth,H,side,,\na.mp4,2,6.0,not_depth,H,side,,\na.mp4,3,9.0,depth,L,side,,\n"
    )
    attempts = [
        {"bottom_s": 2.0, "depth": {**_depth("undecided", 0.4), "confidence": 0.6}},
        {"bottom_s": 6.0, "depth": _depth("below", 3.0)},
        {"bottom_s": 9.0, "depth": _depth("below", 3.0)},
    ]
    report = evaluate(tmp_path, labels, lambda p, s: {"attempts": attempts})
    judged = judged_reps(report.rows)
    assert [(j.right, j.decided) for j in judged] == [(True, False), (False, True)]  # L row left out
