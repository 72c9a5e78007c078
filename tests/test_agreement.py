"""Issue 12, item 5: the agreement report of shadow mode — Cohen's κ against hand-worked examples, the
report over a real store (SQLite and PostgreSQL), its JSON / CSV / printable page through the
dashboard, and ``meetvar agreement`` on the dashboard's database after the meet."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dashboard.agreement import cohen_kappa, report
from dashboard.app import create_app
from dashboard.auth import Auth
from dashboard.state import DashboardState
from dashboard.store import DashboardStore
from meetvar.cli import main
from tests.browser import synthetic_decisions, with_verdict
from tests.test_dashboard import FAST_HASHER, OWN, PASSWORD

# --- Cohen's kappa, by hand ----------------------------------------------------------------------------


def test_kappa_of_a_hand_worked_two_by_two_table() -> None:
    """Rows: system good / no lift; columns: official good / no lift; 50 attempts.

    p_o = (20 + 15) / 50 = 0.70. Marginals: system 25/25 → 0.5/0.5, official 30/20 → 0.6/0.4.
    p_e = 0.5·0.6 + 0.5·0.4 = 0.50, so κ = (0.70 − 0.50) / (1 − 0.50) = 0.40.
    SE (Fleiss, Cohen & Everitt 1969), with p11 = .4, p22 = .3, p12 = .1, p21 = .2:
      A = .4·(1 − 1.1·.6)² + .3·(1 − .9·.6)² = .4·.1156 + .3·.2116 = .10972
      B = (1 − .4)²·[.1·(.6 + .5)² + .2·(.4 + .5)²] = .36·(.121 + .162) = .10188
      C = (.4 − .5·.6)² = .01
      var = (A + B − C) / (50·(1 − .5)²) = .2016 / 12.5 = .016128 → SE = .12700
    95 % CI = .40 ± 1.96·.127 = [.1511, .6489].
    """
    k = cohen_kappa([[20, 5], [10, 15]])
    assert k.n == 50 and k.observed == pytest.approx(0.70) and k.expected == pytest.approx(0.50)
    assert k.value == pytest.approx(0.40)
    assert k.se == pytest.approx(0.12700, abs=5e-5)
    assert k.ci95 is not None
    assert k.ci95[0] == pytest.approx(0.1511, abs=5e-4) and k.ci95[1] == pytest.approx(0.6489, abs=5e-4)


def test_kappa_edges() -> None:
    perfect = cohen_kappa([[3, 0], [0, 2]])  # A = 1, B = 0, C = 1: no spread at all
    assert perfect.value == pytest.approx(1.0) and perfect.se == pytest.approx(0.0)
    assert perfect.ci95 == pytest.approx((1.0, 1.0))
    # Everyone said "good" every time: chance agreement is 1, κ is undefined (not 0, not 1).
    assert cohen_kappa([[5, 0], [0, 0]]).value is None
    assert cohen_kappa([[0, 0], [0, 0]]).value is None and cohen_kappa([[0, 0], [0, 0]]).n == 0
    # The system said "good" both times, the referees split: κ = 0 by construction, and no interval
    # (the large-sample SE would be 0: a certainty two lifts cannot give).
    one_sided = cohen_kappa([[1, 1], [0, 0]])
    assert one_sided.value == pytest.approx(0.0) and one_sided.se is None and one_sided.ci95 is None
    # Worse than chance is negative.
    assert cohen_kappa([[0, 4], [4, 0]]).value == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="square"):
        cohen_kappa([[1, 2, 3], [4, 5, 6]])
    with pytest.raises(ValueError, match="negative"):
        cohen_kappa([[1, -1], [0, 1]])


# --- the report over a real store (both back ends) -----------------------------------------------------

WHITE: dict[str, str | None] = {"left": "good", "head": "good", "right": "good"}
RED: dict[str, str | None] = {"left": "bad", "head": "bad", "right": "bad"}
SPLIT_GOOD: dict[str, str | None] = {"left": "good", "head": "good", "right": "bad"}
SPLIT_RED: dict[str, str | None] = {"left": "bad", "head": "good", "right": "bad"}

# (system call, official lights or None, lifter) per lift of meet1, in time order.
PLAN: list[tuple[str, dict[str, str | None] | None, str]] = [
    ("good", WHITE, "Ann Lee"),
    ("good", SPLIT_GOOD, "Bea Kim"),
    ("no_lift", RED, "Cho Park"),
    ("good", SPLIT_RED, "Dee Moss"),  # disagreement: system good, referees no lift
    ("no_lift", WHITE, "Eve Holt"),  # disagreement: system no lift, referees good
    ("undecided", WHITE, "Fay Lowe"),  # counted, not in κ
    ("good", None, "Gus Rey"),  # no lights yet: pending
]
# The 2×2 of the plan, system × official: [[2, 1], [1, 1]], n = 5:
#   p_o = 3/5 = .6; marginals .6/.4 both ways; p_e = .36 + .16 = .52; κ = .08/.48 = .1667.
#   A = .4·(1 − 1.2·.8333)² + .2·(1 − .8·.8333)² = 0 + .02222
#   B = .8333²·(.2·1² + .2·1²) = .27778;  C = (.1667 − .52·.8333)² = .07111
#   var = .22889 / (5·.48²) = .19869 → SE = .4457; CI = .1667 ± .8737 → [−.7070, 1.0 (clipped)].
KAPPA, SE, CI = 0.1667, 0.4457, (-0.7070, 1.0)


def fill(store: DashboardStore) -> dict[str, int]:
    """Lift ids by lifter, as :data:`PLAN` says; plus one lift of another meet (white lights, good)."""
    state = DashboardState(store, auth=Auth(store.engine, hasher=FAST_HASHER))
    depths = [1.3 if call == "good" else 0.6 for call, _, _ in PLAN]
    ids: dict[str, int] = {}
    for (call, lights, lifter), msg in zip(PLAN, synthetic_decisions(depths), strict=True):
        msg = with_verdict(msg, "undecided") if call == "undecided" else msg
        assert msg["attempt"]["verdict"] == call
        state.on_decision(msg)
        lift_id = state.store.lifts(limit=1)[0]["id"]
        store.assign_lift(lift_id, lifter, 1, "squat")
        if lights is not None:
            store.set_lights(lift_id, lights, "head")
        ids[lifter] = lift_id
    (other,) = synthetic_decisions([1.3], start_us=1_767_000_500_000_000)
    other = {**other, "meet": "meet2", "attempt_id": other["attempt_id"].replace("meet1/", "meet2/")}
    state.on_decision(other)
    store.set_lights(store.lifts(limit=1)[0]["id"], WHITE, "head")
    return ids


def check_report(store: DashboardStore) -> None:
    ids = fill(store)
    rep = store.agreement(meet="meet1", base_url="https://var.example.org/")
    assert rep["confusion"] == {
        "good": {"good": 2, "no_lift": 1},
        "no_lift": {"good": 1, "no_lift": 1},
        "undecided": {"good": 1, "no_lift": 0},
    }
    assert (rep["lifts"], rep["with_lights"], rep["compared"], rep["agree"], rep["disagree"]) == (
        7,
        6,
        5,
        3,
        2,
    )
    assert (rep["system_undecided"], rep["pending"], rep["hidden"], rep["rate"]) == (1, 1, 0, 0.6)
    k = rep["kappa"]
    assert k["n"] == 5 and k["value"] == pytest.approx(KAPPA, abs=1e-4)
    assert k["se"] == pytest.approx(SE, abs=1e-4)
    assert k["ci95"] == pytest.approx(list(CI), abs=1e-4)
    assert [r["lifter"] for r in rep["attempts"]] == [lifter for _, _, lifter in PLAN]  # in time order
    assert [(d["lifter"], d["system"], d["official"]) for d in rep["disagreements"]] == [
        ("Dee Moss", "good", "no_lift"),
        ("Eve Holt", "no_lift", "good"),
    ]
    assert rep["disagreements"][0]["replay"] == f"https://var.example.org/#replay/{ids['Dee Moss']}"
    assert rep["disagreements"][0]["lights"] == SPLIT_RED
    # All meets: the other meet's agreeing lift is one more in the table.
    everything = store.agreement()
    assert everything["confusion"]["good"]["good"] == 3 and everything["lifts"] == 8
    # The same numbers from the pure function over the store's lifts.
    assert report(store.lifts(limit=1000), meet="meet1", base_url="https://var.example.org")["kappa"] == k


def test_the_report_over_a_real_store(db_target: str) -> None:
    store = DashboardStore(db_target)
    try:
        check_report(store)
    finally:
        store.engine.dispose()


# --- through the dashboard -----------------------------------------------------------------------------


def test_json_csv_and_the_printable_page(db_target: str) -> None:
    store = DashboardStore(db_target)
    state = DashboardState(store, auth=Auth(store.engine, hasher=FAST_HASHER))
    state.auth.create_user("org", "organizer", PASSWORD)
    ids = fill(store)
    try:
        with TestClient(create_app(state)) as c:
            assert c.get("/agreement").status_code == 401  # a session first, like every report
            c.post("/api/login", json={"name": "org", "password": PASSWORD}, headers=OWN)
            rep = c.get("/api/agreement?meet=meet1").json()
            assert rep["kappa"]["value"] == pytest.approx(KAPPA, abs=1e-4) and rep["compared"] == 5

            r = c.get("/api/agreement.csv?meet=meet1")
            assert r.headers["content-type"].startswith("text/csv")
            rows = list(csv.DictReader(io.StringIO(r.text)))
            assert [row["lifter"] for row in rows] == [lifter for _, _, lifter in PLAN]
            dee = next(row for row in rows if row["lifter"] == "Dee Moss")
            assert (dee["system_call"], dee["official_result"], dee["outcome"]) == (
                "good",
                "no_lift",
                "disagree",
            )
            assert (dee["official_left"], dee["official_head"], dee["official_right"]) == (
                "bad",
                "good",
                "bad",
            )
            assert dee["replay"] == f"/#replay/{ids['Dee Moss']}"
            assert [row["outcome"] for row in rows].count("undecided") == 1
            assert next(row for row in rows if row["lifter"] == "Gus Rey")["outcome"] == "pending"

            page = c.get("/agreement?meet=meet1")
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            html = page.text
            assert "<script" not in html  # printable without JavaScript
            assert '<link rel="stylesheet" href="/static/agreement.css">' in html
            assert "κ = 0.167 (95% CI -0.707 to 1.000; SE 0.446; n = 5)" in html
            cells = dict(re.findall(r"data-cell='([a-z_]+/[a-z_]+)'>(\d+)<", html))
            assert cells == {
                "good/good": "2",
                "good/no_lift": "1",
                "no_lift/good": "1",
                "no_lift/no_lift": "1",
                "undecided/good": "1",
                "undecided/no_lift": "0",
            }
            disagreements = html.split("id='disagreements'")[1].split("</table>")[0]
            assert f"href='/#replay/{ids['Dee Moss']}'" in disagreements and "Eve Holt" in disagreements
            assert "Ann Lee" not in disagreements
            css = c.get("/static/agreement.css").text
            assert "@media print" in css and "@page" in css
            assert c.get("/api/agreement?meet=" + "x" * 101).status_code == 422  # a clear 4xx, not a 500
    finally:
        store.engine.dispose()


# --- the CLI, after the meet ---------------------------------------------------------------------------


def test_meetvar_agreement_from_the_dashboard_database(
    db_target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = DashboardStore(db_target)
    ids = fill(store)
    store.engine.dispose()

    assert main(["agreement", "--db", db_target, "--meet", "meet1", "--json"]) == 0
    rep: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert rep["kappa"]["value"] == pytest.approx(KAPPA, abs=1e-4) and len(rep["disagreements"]) == 2

    assert main(["agreement", "--db", db_target, "--meet", "meet1", "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 7 and {r["meet"] for r in rows} == {"meet1"}

    out = tmp_path / "report.html"
    assert (
        main(["agreement", "--db", db_target, "--html", str(out), "--base-url", "https://var.example.org"])
        == 0
    )
    html = out.read_text()
    assert "@media print" in html and "<style>" in html and "<script" not in html  # stands alone
    assert f"href='https://var.example.org/#replay/{ids['Eve Holt']}'" in html

    assert main(["agreement", "--db", db_target, "--meet", "meet1"]) == 0
    text = capsys.readouterr().out
    assert "Cohen's kappa = 0.167, 95% CI -0.707 to 1.000" in text
    assert re.search(r"system good\s+2\s+1", text) and re.search(r"system undecided\s+1\s+0", text)
    assert f"lift {ids['Dee Moss']} Dee Moss: system good, official no_lift" in text


def test_meetvar_agreement_says_what_is_wrong_in_one_line(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "meetvar.cli", "agreement", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    missing = run("--db", str(tmp_path / "nope.sqlite"))
    assert missing.returncode == 2 and "no such database file" in missing.stderr
    assert "Traceback" not in missing.stderr and not (tmp_path / "nope.sqlite").exists()
    store = DashboardStore(tmp_path / "meet.sqlite")
    fill(store)
    store.engine.dispose()
    wrong = run("--db", str(tmp_path / "meet.sqlite"), "--meet", "nationals")
    assert (
        wrong.returncode == 2
        and "no lifts of meet 'nationals'" in wrong.stderr
        and "meet1, meet2" in wrong.stderr
    )
    ok = run("--db", str(tmp_path / "meet.sqlite"), "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["lifts"] == 8
