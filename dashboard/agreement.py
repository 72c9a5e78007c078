"""The agreement report: the system's calls against the official results, for a meet run in shadow mode.

Pure functions over the store's lifts (``DashboardStore.lifts``), so the JSON endpoint, the CSV, the
printable page and ``meetvar agreement`` (after the meet, from the dashboard's database) report the
same numbers.

- The **official result** is the referees' decision: the majority of the three official lights
  (``lights_majority``). The result that finally stood (after a jury reversal) is reported beside it
  but is not what the system is compared with: the jury decides on the video, the system on the squat.
- The **confusion table** is system call (good / no_lift / undecided) × official result (good /
  no_lift), over the lifts that have both.
- **Cohen's κ** is over the 2×2 part: an undecided call is the system declining to judge, so it is
  counted (in the table and in ``system_undecided``) but excluded from κ. Its 95 % confidence
  interval is κ ± 1.96·SE with the large-sample standard error of Fleiss, Cohen & Everitt (1969) — the
  "ASE" SAS PROC FREQ and statsmodels' ``cohens_kappa`` report — clipped to [−1, 1]. No resampling,
  so the interval is the same on every run.
"""

from __future__ import annotations

import csv
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from dashboard.fusion import lights_majority

SYSTEM = ("good", "no_lift", "undecided")
OFFICIAL = ("good", "no_lift")
Z95 = 1.959963984540054  # the standard normal's 97.5th percentile
SE_METHOD = "Fleiss, Cohen & Everitt (1969) large-sample standard error; 95% CI = kappa ± 1.96·SE"
OFFICIAL_SOURCE = "majority of the three official lights (referees)"


@dataclass(frozen=True)
class Kappa:
    """Cohen's κ of a square table of counts; ``value`` is None where it is undefined (no data, or
    both raters always said the same one category so chance agreement is 1)."""

    n: int
    observed: float | None
    expected: float | None
    value: float | None
    se: float | None
    ci95: tuple[float, float] | None
    method: str = SE_METHOD


def cohen_kappa(table: Sequence[Sequence[int]]) -> Kappa:
    """κ = (p_o − p_e) / (1 − p_e) of a k×k table (rows: rater A, columns: rater B), with the
    Fleiss–Cohen–Everitt standard error:

        var = [ Σ_i p_ii (1 − (p_i. + p_.i)(1 − κ))²
              + (1 − κ)² Σ_{i≠j} p_ij (p_.i + p_j.)²
              − (κ − p_e (1 − κ))² ] / (n (1 − p_e)²)
    """
    k = len(table)
    if any(len(row) != k for row in table):
        raise ValueError("Cohen's kappa needs a square table")
    if any(c < 0 for row in table for c in row):
        raise ValueError("counts are never negative")
    n = sum(sum(row) for row in table)
    if n == 0:
        return Kappa(0, None, None, None, None, None)
    p = [[c / n for c in row] for row in table]
    rows = [sum(p[i]) for i in range(k)]
    cols = [sum(p[i][j] for i in range(k)) for j in range(k)]
    po = sum(p[i][i] for i in range(k))
    pe = sum(rows[i] * cols[i] for i in range(k))
    if math.isclose(pe, 1.0):
        return Kappa(n, po, pe, None, None, None)
    kappa = (po - pe) / (1 - pe)
    if max(rows) == 1.0 or max(cols) == 1.0:
        # One rater gave one answer throughout: κ is 0 by construction, and the large-sample SE
        # collapses to 0 — a zero-width interval that would claim a certainty two lifts cannot give.
        return Kappa(n, po, pe, kappa, None, None)
    a = sum(p[i][i] * (1 - (rows[i] + cols[i]) * (1 - kappa)) ** 2 for i in range(k))
    b = (1 - kappa) ** 2 * sum(
        p[i][j] * (cols[i] + rows[j]) ** 2 for i in range(k) for j in range(k) if i != j
    )
    c = (kappa - pe * (1 - kappa)) ** 2
    var = max(a + b - c, 0.0) / (n * (1 - pe) ** 2)
    se = math.sqrt(var)
    ci = (max(-1.0, kappa - Z95 * se), min(1.0, kappa + Z95 * se))
    return Kappa(n, po, pe, kappa, se, ci)


def _system_call(lift: dict[str, Any]) -> str:
    """The fused call, or "hidden" where shadow mode hides it from this reader."""
    fused = lift.get("fused")
    return "hidden" if not fused else str(fused["verdict"])


def _row(lift: dict[str, Any], base_url: str) -> dict[str, Any]:
    lights = lift.get("lights") or {}
    official = lights_majority(lights or None)
    system = _system_call(lift)
    fused = lift.get("fused") or {}
    if system == "hidden":
        outcome = "hidden"
    elif official is None:
        outcome = "pending"
    elif system == "undecided":
        outcome = "undecided"
    else:
        outcome = "agree" if system == official else "disagree"
    final = (lift.get("result") or {}).get("verdict")
    return {
        "lift_id": int(lift["id"]),
        "meet": lift["meet"],
        "platform": lift["platform"],
        "lifter": lift.get("lifter"),
        "lift": lift.get("lift_name"),
        "attempt_number": lift.get("attempt_number"),
        "weight_kg": lift.get("weight_kg"),
        "bottom_us": lift.get("bottom_us"),
        "system": system,
        "margin_cm": fused.get("margin_cm"),
        "confidence": fused.get("confidence"),
        "lights": {k: lights.get(k) for k in ("left", "head", "right")},
        "official": official,
        "final": final,
        "outcome": outcome,
        "replay": f"{base_url.rstrip('/')}/#replay/{int(lift['id'])}",
    }


def report(lifts: list[dict[str, Any]], meet: str | None = None, base_url: str = "") -> dict[str, Any]:
    """The agreement report of ``lifts`` (any order; listed oldest first), optionally of one meet.

    ``base_url`` prefixes the replay links (the dashboard's address; empty: links relative to it)."""
    chosen = [x for x in lifts if meet is None or x["meet"] == meet]
    rows = sorted((_row(x, base_url) for x in chosen), key=lambda r: (r["bottom_us"] or 0, r["lift_id"]))
    confusion = {s: {o: 0 for o in OFFICIAL} for s in SYSTEM}
    for r in rows:
        if r["official"] is not None and r["system"] in SYSTEM:
            confusion[r["system"]][r["official"]] += 1
    kappa = cohen_kappa([[confusion[s][o] for o in OFFICIAL] for s in OFFICIAL])
    with_lights = sum(1 for r in rows if r["official"] is not None and r["system"] != "hidden")
    compared = kappa.n
    agree = confusion["good"]["good"] + confusion["no_lift"]["no_lift"]
    return {
        "meet": meet,
        "official_source": OFFICIAL_SOURCE,
        # The summary the history page has always shown.
        "lifts": len(rows),
        "with_lights": with_lights,
        "system_undecided": sum(confusion["undecided"].values()),
        "compared": compared,
        "agree": agree,
        "disagree": compared - agree,
        "rate": None if not compared else round(agree / compared, 4),
        "pending": sum(1 for r in rows if r["outcome"] == "pending"),
        "hidden": sum(1 for r in rows if r["outcome"] == "hidden"),
        "confusion": confusion,
        "kappa": {
            "value": _round(kappa.value),
            "se": _round(kappa.se),
            "ci95": None if kappa.ci95 is None else [_round(kappa.ci95[0]), _round(kappa.ci95[1])],
            "n": kappa.n,
            "observed": _round(kappa.observed),
            "expected": _round(kappa.expected),
            "method": kappa.method,
        },
        "attempts": rows,
        "disagreements": [r for r in rows if r["outcome"] == "disagree"],
    }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


# --- CSV -----------------------------------------------------------------------------------------------

CSV_FIELDS = (
    "lift_id",
    "meet",
    "platform",
    "lifter",
    "lift",
    "attempt",
    "weight_kg",
    "bottom_utc_us",
    "system_call",
    "margin_cm",
    "confidence",
    "official_left",
    "official_head",
    "official_right",
    "official_result",
    "final_result",
    "outcome",
    "replay",
)


def report_csv(rep: dict[str, Any]) -> str:
    """One row per attempt (the table and κ are in the JSON and the printable page)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_FIELDS)
    for r in rep["attempts"]:
        w.writerow(
            [
                r["lift_id"],
                r["meet"],
                r["platform"],
                r["lifter"] or "",
                r["lift"] or "",
                r["attempt_number"] or "",
                "" if r["weight_kg"] is None else r["weight_kg"],
                r["bottom_us"] or "",
                r["system"],
                "" if r["margin_cm"] is None else r["margin_cm"],
                "" if r["confidence"] is None else r["confidence"],
                r["lights"]["left"] or "",
                r["lights"]["head"] or "",
                r["lights"]["right"] or "",
                r["official"] or "",
                r["final"] or "",
                r["outcome"],
                r["replay"],
            ]
        )
    return buf.getvalue()


# --- the printable page --------------------------------------------------------------------------------

WORDS = {"good": "good lift", "no_lift": "no lift", "undecided": "undecided", "hidden": "hidden", None: "—"}


def stylesheet() -> str:
    return resources.files("dashboard").joinpath("static/agreement.css").read_text(encoding="utf-8")


def report_html(rep: dict[str, Any], *, inline_css: bool = False) -> str:
    """A self-contained page (no script): the summary, the confusion table, κ and every attempt, the
    disagreements first. ``inline_css`` embeds the stylesheet (a file written by the CLI); the
    dashboard links /static/agreement.css instead, as its Content-Security-Policy allows no inline
    style."""
    e = html.escape
    k = rep["kappa"]
    title = f"Agreement report{' — ' + rep['meet'] if rep['meet'] else ''}"
    style = (
        f"<style>\n{stylesheet()}</style>"
        if inline_css
        else '<link rel="stylesheet" href="/static/agreement.css">'
    )
    if k["value"] is None:
        kappa_text = f"Cohen's κ: not defined (n = {k['n']})"
    elif k["ci95"] is None:
        kappa_text = (
            f"Cohen's κ = {k['value']:.3f} (n = {k['n']}; no interval: one side gave one answer throughout)"
        )
    else:
        lo, hi = k["ci95"]
        kappa_text = (
            f"Cohen's κ = {k['value']:.3f} (95% CI {lo:.3f} to {hi:.3f}; SE {k['se']:.3f}; n = {k['n']})"
        )
    head = "".join(f"<th scope='col'>official {e(WORDS[o])}</th>" for o in OFFICIAL)
    body = "".join(
        f"<tr><th scope='row'>system {e(WORDS[s])}</th>"
        + "".join(f"<td data-cell='{s}/{o}'>{rep['confusion'][s][o]}</td>" for o in OFFICIAL)
        + "</tr>"
        for s in SYSTEM
    )

    def lights(r: dict[str, Any]) -> str:
        sym = {"good": "W", "bad": "R", None: "·"}
        return " ".join(sym[r["lights"][x]] for x in ("left", "head", "right"))

    def attempt_rows(rows: list[dict[str, Any]]) -> str:
        out = []
        for r in rows:
            who = " · ".join(
                str(x)
                for x in (
                    r["lifter"],
                    r["lift"],
                    f"attempt {r['attempt_number']}" if r["attempt_number"] else None,
                    f"{r['weight_kg']} kg" if r["weight_kg"] is not None else None,
                )
                if x
            )
            margin = "" if r["margin_cm"] is None else f"{r['margin_cm']:+.1f} cm"
            out.append(
                f"<tr class='{e(r['outcome'])}' data-lift-id='{r['lift_id']}'>"
                f"<td>{r['lift_id']}</td><td>{e(who or '—')}</td>"
                f"<td>{e(WORDS.get(r['system'], r['system']))}</td>"
                f"<td class='nums'>{e(margin)}</td><td class='nums'>{e(lights(r))}</td>"
                f"<td>{e(WORDS[r['official']])}</td><td>{e(WORDS.get(r['final'], str(r['final'])))}</td>"
                f"<td>{e(r['outcome'])}</td><td><a href='{e(r['replay'])}'>replay</a></td></tr>"
            )
        return "".join(out)

    cols = (
        "<thead><tr><th scope='col'>Lift</th><th scope='col'>Lifter</th><th scope='col'>System</th>"
        "<th scope='col'>Margin</th><th scope='col'>Lights L H R</th><th scope='col'>Official</th>"
        "<th scope='col'>Final</th><th scope='col'>Outcome</th><th scope='col'>Replay</th></tr></thead>"
    )
    dis = rep["disagreements"]
    rate = "" if rep["rate"] is None else f" ({rep['rate'] * 100:.0f} %)"
    hidden = (
        f"<p>{rep['hidden']} attempt(s) hidden by shadow mode until their official lights are in.</p>"
        if rep["hidden"]
        else ""
    )
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{e(title)}</title>{style}</head><body>"
        f"<h1>{e(title)}</h1>"
        f"<p class='summary'>{rep['lifts']} attempts; {rep['with_lights']} with official lights; "
        f"system agreed on {rep['agree']} of {rep['compared']} it called"
        f"{rate}; "
        f"{rep['system_undecided']} undecided (counted, not in κ); {rep['pending']} awaiting lights.</p>"
        f"{hidden}"
        f"<p id='kappa'>{e(kappa_text)}</p>"
        f"<p class='fine'>Official result: {e(rep['official_source'])}. {e(k['method'])}.</p>"
        "<h2>Confusion table</h2>"
        f"<table id='confusion'><thead><tr><td></td>{head}</tr></thead><tbody>{body}</tbody></table>"
        f"<h2>Disagreements ({len(dis)})</h2>"
        + (
            f"<table id='disagreements'>{cols}<tbody>{attempt_rows(dis)}</tbody></table>"
            if dis
            else "<p>None.</p>"
        )
        + f"<h2>Every attempt ({len(rep['attempts'])})</h2>"
        f"<table id='attempts'>{cols}<tbody>{attempt_rows(rep['attempts'])}</tbody></table>"
        "</body></html>\n"
    )


__all__ = ["Kappa", "cohen_kappa", "report", "report_csv", "report_html"]
