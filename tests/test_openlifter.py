"""OpenLifter in and out, on a small hand-written ``.openlifter`` file: the roster read, official results
written back into the status arrays, OpenPowerlifting's CSV with failed attempts negative, and the CLI."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from meetvar.cli import main
from meetvar.meetsoftware.openlifter import (
    OfficialResult,
    OpenLifterError,
    apply_results,
    load,
    opl_csv,
    results_from_json,
    results_from_store,
    roster,
)


def entry(eid: int, name: str, sex: str, bw: float, squat: list[float], status: list[int], **kw: Any) -> dict:
    return {
        "id": eid,
        "name": name,
        "sex": sex,
        "day": 1,
        "platform": 1,
        "flight": "A",
        "divisions": ["Open"],
        "events": [kw.get("event", "SBD")],
        "equipment": "Raw",
        "bodyweightKg": bw,
        "team": "",
        "squatKg": squat,
        "squatStatus": status,
        "benchKg": kw.get("bench", [100, 0, 0, 0, 0]),
        "benchStatus": kw.get("bench_status", [1, 0, 0, 0, 0]),
        "deadliftKg": kw.get("dead", [200, 0, 0, 0, 0]),
        "deadliftStatus": kw.get("dead_status", [1, 0, 0, 0, 0]),
    }


MEET = {
    "versions": {"stateVersion": "3"},
    "meet": {"name": "Test Open", "weightClassesKgMen": [74, 83, 93], "weightClassesKgWomen": [63, 69]},
    "registration": {
        "nextEntryId": 3,
        "entries": [
            entry(1, "Ann Smith", "F", 62.4, [140, 147.5, 0, 0, 0], [0, 0, 0, 0, 0]),
            entry(2, "Bob  Jones", "M", 95.0, [200, 0, 0, 0, 0], [0, 0, 0, 0, 0]),
        ],
    },
    "lifting": {"day": 1, "platform": 1, "flight": "A", "lift": "S"},
}


@pytest.fixture
def meet_file(tmp_path: Path) -> Path:
    path = tmp_path / "test.openlifter"
    path.write_text(json.dumps(MEET))
    return path


RESULTS = [
    OfficialResult("Ann Smith", "squat", 1, 140.0, "good"),
    OfficialResult("Ann Smith", "squat", 2, 147.5, "no_lift"),
    OfficialResult("bob jones", "squat", 1, 200.0, "no_lift"),
    OfficialResult("Bob Jones", "squat", 2, 205.0, "good"),  # the file had no weight there yet
]


def test_roster_reads_lifters_and_attempts(meet_file: Path) -> None:
    lifters = roster(load(meet_file))
    assert [(x.name, x.sex, x.bodyweight_kg, x.division) for x in lifters] == [
        ("Ann Smith", "F", 62.4, "Open"),
        ("Bob  Jones", "M", 95.0, "Open"),
    ]
    ann = lifters[0]
    assert [(a.lift, a.number, a.weight_kg, a.status) for a in ann.attempts] == [
        ("squat", 1, 140.0, 0),
        ("squat", 2, 147.5, 0),
        ("bench", 1, 100.0, 1),
        ("dead", 1, 200.0, 1),
    ]


def test_not_an_openlifter_file_says_so(tmp_path: Path) -> None:
    bad = tmp_path / "x.openlifter"
    bad.write_text('{"meet": {}}')
    with pytest.raises(OpenLifterError, match="not an OpenLifter meet"):
        load(bad)
    bad.write_text("not json")
    with pytest.raises(OpenLifterError, match="not JSON"):
        load(bad)


def test_results_go_into_the_status_arrays(meet_file: Path) -> None:
    data = load(meet_file)
    updated, unmatched = apply_results(data, [*RESULTS, OfficialResult("Nobody", "squat", 1, 100.0, "good")])
    ann, bob = updated["registration"]["entries"]
    assert ann["squatStatus"] == [1, -1, 0, 0, 0] and ann["squatKg"] == [140, 147.5, 0, 0, 0]
    assert bob["squatStatus"] == [-1, 1, 0, 0, 0] and bob["squatKg"] == [200, 205.0, 0, 0, 0]
    assert unmatched == ["Nobody squat 1: good (no such entry or attempt)"]
    assert data["registration"]["entries"][0]["squatStatus"] == [0, 0, 0, 0, 0]  # the input is not changed


def test_openpowerlifting_csv_has_failed_attempts_negative(meet_file: Path) -> None:
    updated, _ = apply_results(load(meet_file), RESULTS)
    rows = {r["Name"]: r for r in csv.DictReader(io.StringIO(opl_csv(updated)))}
    ann, bob = rows["Ann Smith"], rows["Bob  Jones"]
    assert (ann["Squat1Kg"], ann["Squat2Kg"], ann["Squat3Kg"], ann["Best3SquatKg"]) == (
        "140",
        "-147.5",
        "",
        "140",
    )
    assert (bob["Squat1Kg"], bob["Squat2Kg"], bob["Best3SquatKg"]) == ("-200", "205", "205")
    assert ann["TotalKg"] == "440" and bob["TotalKg"] == "505"
    assert ann["WeightClassKg"] == "63" and bob["WeightClassKg"] == "93+"
    assert ann["Place"] == "1" and bob["Place"] == "1"
    # a lifter with no good squat has no total and is disqualified
    bombed, _ = apply_results(load(meet_file), [OfficialResult("Ann Smith", "squat", 1, 140.0, "no_lift")])
    ann = next(r for r in csv.DictReader(io.StringIO(opl_csv(bombed))) if r["Name"] == "Ann Smith")
    assert (ann["Squat1Kg"], ann["Best3SquatKg"], ann["TotalKg"], ann["Place"]) == ("-140", "", "", "DQ")


def test_results_from_api_attempts_json_one_per_attempt(tmp_path: Path) -> None:
    official = {"lights": {"left": "good", "head": "good", "right": "bad"}, "result": "good"}
    items = [
        {
            "camera": c,
            "lifter": "Ann Smith",
            "lift": "squat",
            "attempt_number": 1,
            "weight_kg": 140.0,
            "official": official,
        }
        for c in ("side", "front")
    ] + [{"camera": "side", "lifter": "Ann Smith", "lift": "squat", "attempt_number": 2, "official": None}]
    path = tmp_path / "attempts.json"
    path.write_text(json.dumps(items))
    assert results_from_json(path) == [OfficialResult("Ann Smith", "squat", 1, 140.0, "good")]


def test_results_from_the_dashboard_store() -> None:
    from dashboard.state import DashboardState
    from dashboard.store import DashboardStore
    from stream_processors.schemas import Official, OfficialLights, StateMsg
    from tests.browser import STREAM_START_US, synthetic_decisions

    state = DashboardState(DashboardStore())
    base = {
        "meet": "meet1",
        "platform": "platform-A",
        "lifter": "Ann Smith",
        "lift": "squat",
        "attempt_number": 1,
    }
    state.on_state(StateMsg(**base, weight_kg=140.0, at_us=STREAM_START_US - 1).model_dump(mode="json"))
    (decision,) = synthetic_decisions([1.3])
    state.on_decision(decision)
    lights = OfficialLights(left="bad", head="good", right="good")
    state.on_state(
        StateMsg(**base, weight_kg=140.0, official=Official(lights=lights, result="good")).model_dump(
            mode="json"
        )
    )
    assert results_from_store(state.store) == [OfficialResult("Ann Smith", "squat", 1, 140.0, "good")]
    assert results_from_store(state.store, "other-meet") == []


def test_cli_import_and_export(meet_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["openlifter", "import", str(meet_file), "--json"]) == 0
    lifters = json.loads(capsys.readouterr().out)
    assert [x["name"] for x in lifters] == ["Ann Smith", "Bob  Jones"]
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{**r.__dict__} for r in RESULTS]))
    out, opl = tmp_path / "out.openlifter", tmp_path / "entries.csv"
    code = main(
        [
            "openlifter",
            "export",
            str(meet_file),
            "--results",
            str(results),
            "--out",
            str(out),
            "--csv",
            str(opl),
        ]
    )
    assert code == 0
    assert json.loads(out.read_text())["registration"]["entries"][0]["squatStatus"] == [1, -1, 0, 0, 0]
    assert "-147.5" in opl.read_text()
    assert main(["openlifter", "import", str(tmp_path / "missing.openlifter")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("meetvar: no such file")
