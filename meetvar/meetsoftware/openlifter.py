"""OpenLifter's ``.openlifter`` files in (the roster and its attempts) and out (official results).

An ``.openlifter`` file is the JSON of OpenLifter's whole state: ``registration.entries`` is the list of
lifters, each with ``name``, ``sex``, ``bodyweightKg``, ``divisions``, ``equipment``, ``events`` and,
per lift, ``squatKg`` / ``benchKg`` / ``deadliftKg`` (attempt weights, 0 = not entered) and
``squatStatus`` / ``benchStatus`` / ``deadliftStatus`` (``-1`` failed, ``0`` not taken, ``1`` good), one
slot per attempt (OpenLifter keeps five: three attempts and fourth-attempt records).

Out: the official results (what stands after the referees and the jury) go back into those status
arrays, and into an OpenPowerlifting ``entries.csv`` where a failed attempt is the negative of its
weight.
"""

from __future__ import annotations

import copy
import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Our lift names (``meet.state``'s ``lift``) and OpenLifter's field prefixes.
LIFT_FIELDS = {"squat": "squat", "bench": "bench", "dead": "deadlift"}
STATUS = {"good": 1, "no_lift": -1}


class OpenLifterError(ValueError):
    """A file that is not an OpenLifter meet, or results that do not fit it; the message says which."""


@dataclass
class RosterAttempt:
    lift: str  # squat | bench | dead
    number: int  # 1-based
    weight_kg: float | None
    status: int  # -1 failed, 0 not taken, 1 good


@dataclass
class RosterLifter:
    id: Any
    name: str
    sex: str | None = None
    bodyweight_kg: float | None = None
    division: str | None = None
    equipment: str | None = None
    event: str | None = None
    team: str | None = None
    attempts: list[RosterAttempt] = field(default_factory=list)


@dataclass
class OfficialResult:
    """One attempt's official result: who, which lift and attempt, the weight and what stands."""

    lifter: str
    lift: str
    attempt_number: int
    weight_kg: float | None
    result: str  # good | no_lift


def load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OpenLifterError(f"no such file: {path}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OpenLifterError(f"{path} is not an OpenLifter file (not JSON: {exc})") from None
    entries(data, str(path))  # fail early on the wrong shape
    return dict(data)


def entries(data: Any, where: str = "the file") -> list[dict[str, Any]]:
    reg = data.get("registration") if isinstance(data, dict) else None
    found = reg.get("entries") if isinstance(reg, dict) else None
    if not isinstance(found, list) or not all(isinstance(e, dict) and e.get("name") for e in found):
        raise OpenLifterError(f"{where} is not an OpenLifter meet: no registration.entries with names")
    return found


def _number(value: Any) -> float | None:
    try:
        n = float(value)
    except (TypeError, ValueError):
        return None
    return n if n > 0 else None


def roster(data: dict[str, Any]) -> list[RosterLifter]:
    """The lifters and every attempt slot that has a weight or a status."""
    out = []
    for e in entries(data):
        lifter = RosterLifter(
            id=e.get("id"),
            name=str(e["name"]).strip(),
            sex=e.get("sex"),
            bodyweight_kg=_number(e.get("bodyweightKg")),
            division=(e.get("divisions") or [None])[0],
            equipment=e.get("equipment"),
            event=(e.get("events") or [None])[0],
            team=e.get("team") or None,
        )
        for lift, prefix in LIFT_FIELDS.items():
            weights = list(e.get(f"{prefix}Kg") or [])
            statuses = list(e.get(f"{prefix}Status") or [])
            for i in range(max(len(weights), len(statuses))):
                w = _number(weights[i]) if i < len(weights) else None
                st = int(statuses[i]) if i < len(statuses) and statuses[i] in (-1, 0, 1) else 0
                if w is not None or st:
                    lifter.attempts.append(RosterAttempt(lift, i + 1, w, st))
        out.append(lifter)
    return out


def _find(by_name: dict[str, dict[str, Any]], name: str) -> dict[str, Any] | None:
    return by_name.get(" ".join(name.split()).casefold())


def apply_results(
    data: dict[str, Any], results: Iterable[OfficialResult]
) -> tuple[dict[str, Any], list[str]]:
    """A copy of the meet with each official result in its lifter's status array (and its weight where
    the file had none). Returns the copy and a line per result that fits no entry."""
    out = copy.deepcopy(data)
    by_name = {" ".join(str(e["name"]).split()).casefold(): e for e in entries(out)}
    unmatched = []
    for r in results:
        prefix = LIFT_FIELDS.get(r.lift)
        entry = _find(by_name, r.lifter)
        if prefix is None or entry is None or r.result not in STATUS or not 1 <= r.attempt_number <= 5:
            unmatched.append(f"{r.lifter} {r.lift} {r.attempt_number}: {r.result} (no such entry or attempt)")
            continue
        i = r.attempt_number - 1
        weights = entry.setdefault(f"{prefix}Kg", [])
        statuses = entry.setdefault(f"{prefix}Status", [])
        while len(weights) < 5:
            weights.append(0)
        while len(statuses) < 5:
            statuses.append(0)
        if not _number(weights[i]) and r.weight_kg:
            weights[i] = r.weight_kg
        statuses[i] = STATUS[r.result]
    return out, unmatched


OPL_COLUMNS = (
    "Name",
    "Sex",
    "Event",
    "Equipment",
    "Division",
    "BodyweightKg",
    "WeightClassKg",
    "Squat1Kg",
    "Squat2Kg",
    "Squat3Kg",
    "Best3SquatKg",
    "Bench1Kg",
    "Bench2Kg",
    "Bench3Kg",
    "Best3BenchKg",
    "Deadlift1Kg",
    "Deadlift2Kg",
    "Deadlift3Kg",
    "Best3DeadliftKg",
    "TotalKg",
    "Place",
    "Team",
)
_OPL_LIFT = {"squat": "Squat", "bench": "Bench", "dead": "Deadlift"}


def _kg(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:g}"


def _weight_class(data: dict[str, Any], sex: str | None, bodyweight: float | None) -> str:
    meet = data.get("meet") or {}
    classes = meet.get("weightClassesKgWomen" if sex == "F" else "weightClassesKgMen") or []
    if bodyweight is None or not classes:
        return ""
    for c in sorted(float(x) for x in classes):
        if bodyweight <= c:
            return f"{c:g}"
    return f"{max(float(x) for x in classes):g}+"


def opl_csv(data: dict[str, Any]) -> str:
    """OpenPowerlifting's ``entries.csv``: attempts 1–3 per lift (failed ones negative, untaken empty),
    the best of them, the total when every lift of the event has a good attempt, and the place by total
    within sex, division, weight class and equipment (``DQ`` when a lift has none)."""
    rows: list[dict[str, str]] = []
    totals: list[tuple[tuple[str, ...], float, dict[str, str]]] = []
    for lifter in roster(data):
        event = lifter.event or "SBD"
        row = {c: "" for c in OPL_COLUMNS}
        row.update(
            Name=lifter.name,
            Sex=lifter.sex or "",
            Event=event,
            Equipment=lifter.equipment or "",
            Division=lifter.division or "",
            BodyweightKg=_kg(lifter.bodyweight_kg),
            WeightClassKg=_weight_class(data, lifter.sex, lifter.bodyweight_kg),
            Team=lifter.team or "",
        )
        total = 0.0
        bombed = False
        for lift, name in _OPL_LIFT.items():
            if name[0] not in event:
                continue
            best: float | None = None
            for a in lifter.attempts:
                if a.lift != lift or a.number > 3 or a.weight_kg is None or a.status == 0:
                    continue
                row[f"{name}{a.number}Kg"] = _kg(a.weight_kg if a.status == 1 else -a.weight_kg)
                if a.status == 1:
                    best = a.weight_kg if best is None else max(best, a.weight_kg)
            row[f"Best3{name}Kg"] = _kg(best)
            if best is None:
                bombed = True
            else:
                total += best
        if bombed:
            row["Place"] = "DQ"
        else:
            row["TotalKg"] = _kg(total)
            group = (row["Sex"], row["Division"], row["WeightClassKg"], row["Equipment"], event)
            totals.append((group, total, row))
        rows.append(row)
    for key in {g for g, _, _ in totals}:
        ranked = sorted((t for t in totals if t[0] == key), key=lambda t: -t[1])
        for place, (_, _, row) in enumerate(ranked, 1):
            row["Place"] = str(place)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=OPL_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def results_from_store(store: Any, meet: str | None = None) -> list[OfficialResult]:
    """The official results on the dashboard's record: every lift with a lifter, a lift, an attempt
    number and a result that stands (referees' lights, or the jury's reversal of them)."""
    out = []
    for lift in store.lifts(limit=1_000_000):
        verdict = (lift.get("result") or {}).get("verdict")
        if meet is not None and lift["meet"] != meet:
            continue
        if not lift.get("lifter") or not lift.get("lift_name") or lift.get("attempt_number") is None:
            continue
        if verdict not in STATUS:
            continue
        out.append(
            OfficialResult(
                lifter=lift["lifter"],
                lift=lift["lift_name"],
                attempt_number=int(lift["attempt_number"]),
                weight_kg=None if lift.get("weight_kg") is None else float(lift["weight_kg"]),
                result=verdict,
            )
        )
    return out


def results_from_json(path: Path) -> list[OfficialResult]:
    """``[{"lifter", "lift", "attempt_number", "weight_kg", "result"}, …]`` — e.g. ``GET /api/attempts``
    items reduced to their official result (items whose ``official.result`` is set are taken as is)."""
    try:
        items = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OpenLifterError(f"cannot read results {path}: {exc}") from None
    if not isinstance(items, list):
        raise OpenLifterError(f"{path}: expected a JSON list of results")
    out: list[OfficialResult] = []
    seen: set[tuple[str, str, int]] = set()
    for it in items:
        if not isinstance(it, dict):
            continue
        result = it.get("result")
        if isinstance(it.get("official"), dict):
            result = it["official"].get("result")
        if (
            not it.get("lifter")
            or not it.get("lift")
            or it.get("attempt_number") is None
            or result not in STATUS
        ):
            continue
        key = (str(it["lifter"]), str(it["lift"]), int(it["attempt_number"]))
        if key in seen:
            continue  # /api/attempts has one item per camera
        seen.add(key)
        weight = it.get("weight_kg")
        out.append(
            OfficialResult(key[0], key[1], key[2], None if weight is None else float(weight), str(result))
        )
    return out
