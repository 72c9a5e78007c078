"""The jury by the rulebook, the roster and the head referee's signals (dashboard/jury.py,
dashboard/roster.py, dashboard/signals.py).

Every test takes a fresh database of the back end under test (``db_target``: SQLite and a real
PostgreSQL, see tests/conftest.py), so the locks, votes and roster rules are checked on both. The
store-level cases call the store and the rule modules directly; the HTTP cases go through the real
app (TestClient), and the signal's round trip goes through the real broker (Tansu) into the real
referee processor.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from dashboard.app import create_app
from dashboard.feed import FeedTopics, kafka_feed
from dashboard.jury import LightsLocked, cast_vote, correct_lights
from dashboard.roster import add_lifters, fold, lifters_of
from dashboard.signals import StatePublisher, merge_state, with_state_publisher
from dashboard.state import DashboardState
from dashboard.store import DashboardStore, StoreError
from stream_processors.kafka import ensure_topics, make_consumer
from stream_processors.referee_processor import RefereeProcessor
from stream_processors.schemas import PoseMsg, StateMsg
from stream_processors.tansu import TansuBroker
from tests.browser import synthetic_decisions
from tests.postgres import Databases
from tests.synthetic import squat_session
from tests.test_dashboard import OWN, PASSWORD, new_state

MEET, PLATFORM = "meet1", "platform-A"
_LIFTS = itertools.count()
WHITE = {"left": "good", "head": "good", "right": "good"}
SPLIT = {"left": "good", "head": "bad", "right": "bad"}  # 2–1 no lift


def lift_of(state: DashboardState, lifter: str, n: int, depth: float = 0.6) -> int:
    """One lift of ``lifter``'s attempt ``n``, named by meet.state before the call, as at a meet."""
    state.on_state(
        {
            "meet": MEET,
            "platform": PLATFORM,
            "lifter": lifter,
            "lift": "squat",
            "attempt_number": n,
            "at_us": 0,
        }
    )
    start = 1_767_000_000_000_000 + next(_LIFTS) * 100_000_000  # each lift a squat of its own
    for msg in synthetic_decisions([depth], start_us=start):
        state.on_decision(msg)
    return int(
        next(x["id"] for x in state.store.lifts() if x["attempt_number"] == n and x["lifter"] == lifter)
    )


def official(lifter: str, n: int, lights: dict[str, str], source: str = "liftingcast") -> dict[str, Any]:
    return {
        "meet": MEET,
        "platform": PLATFORM,
        "lifter": lifter,
        "lift": "squat",
        "attempt_number": n,
        "at_us": 1,
        "official": {"lights": lights, "result": None, "source": source},
    }


def stored_lights(store: DashboardStore, lift_id: int) -> dict[str, Any]:
    found = store.lift(lift_id)
    assert found is not None and found["lights"] is not None
    return {k: found["lights"][k] for k in ("left", "head", "right", "entered_by")}


# --- store level: lights are locked once official -----------------------------------------------------


def test_lights_fill_once_then_lock_and_the_meet_software_cannot_overwrite(db_target: str) -> None:
    state = new_state(db_target)
    store = state.store
    lift_id = lift_of(state, "Ann Lee", 1)
    assert store.set_lights(lift_id, {"left": "good"}, "side1") == {
        "left": "good",
        "head": None,
        "right": None,
    }
    # Another tablet fills the head light; the left one it repeats is the same, so not a conflict.
    store.set_lights(lift_id, {"left": "good", "head": "bad"}, "head1")
    with pytest.raises(LightsLocked, match=r"the head light of lift .* is red already"):
        store.set_lights(lift_id, {"head": "good"}, "head1")
    with pytest.raises(LightsLocked, match="entered already"):
        store.set_lights(lift_id, {"left": "good"}, "side1")
    with pytest.raises(StoreError, match="at least one light") as empty:
        store.set_lights(lift_id, {}, "side1")
    assert empty.value.status == 422
    store.set_lights(lift_id, {"right": "bad"}, "side2")
    assert stored_lights(store, lift_id) == {**SPLIT, "entered_by": "side2"}
    with pytest.raises(LightsLocked, match=r"official .*white / red / red") as locked:
        store.set_lights(lift_id, WHITE, "organizer")
    assert locked.value.status == 409 and f"/api/lifts/{lift_id}/lights/correction" in str(locked.value)

    # The meet software: the same lights again (a redelivered message) change nothing, silently;
    # different ones are refused, logged in the audit chain, and the lights stay.
    state.on_state(official("Ann Lee", 1, SPLIT))
    assert stored_lights(store, lift_id)["entered_by"] == "side2"
    state.on_state(official("Ann Lee", 1, WHITE))
    assert stored_lights(store, lift_id) == {**SPLIT, "entered_by": "side2"}
    refused = [e for e in state.audit.entries() if e["action"] == "official_lights_refused"]
    assert (
        len(refused) == 1 and refused[0]["actor"] == "liftingcast" and refused[0]["role"] == "meet_software"
    )
    assert refused[0]["details"]["lights"] == WHITE and "official" in refused[0]["details"]["why"]
    assert state.audit.verify().ok

    # Lights from the meet software first lock the lift against a person's second entry too.
    other = lift_of(state, "Bob Ray", 1)
    state.on_state(official("Bob Ray", 1, WHITE))
    assert stored_lights(store, other) == {**WHITE, "entered_by": "liftingcast"}
    with pytest.raises(LightsLocked, match="entered by liftingcast"):
        store.set_lights(other, SPLIT, "head1")


def test_a_correction_needs_the_organizer_a_reason_and_three_lights(db_target: str) -> None:
    state = new_state(db_target)
    engine = state.store.engine
    lift_id = lift_of(state, "Ann Lee", 1)
    with pytest.raises(StoreError, match="nothing to correct") as nothing:
        correct_lights(engine, lift_id, SPLIT, "org", "keyed wrongly")
    assert nothing.value.status == 409
    state.store.set_lights(lift_id, WHITE, "head1")
    for values, reason, message in (
        (SPLIT, "  ", "needs a reason"),
        ({"left": "good", "head": "bad"}, "keyed wrongly", "all three lights"),
        ({"left": "green", "head": "bad", "right": "bad"}, "keyed wrongly", "left light must be"),
    ):
        with pytest.raises(StoreError, match=message) as bad:
            correct_lights(engine, lift_id, values, "org", reason)
        assert bad.value.status == 422
    with pytest.raises(StoreError, match="changes nothing"):
        correct_lights(engine, lift_id, WHITE, "org", "keyed wrongly")
    with pytest.raises(StoreError, match="no lift 999") as missing:
        correct_lights(engine, 999, SPLIT, "org", "keyed wrongly")
    assert missing.value.status == 404
    done = correct_lights(engine, lift_id, SPLIT, "org", " keyed wrongly ")
    assert done["old"] == WHITE and done["new"] == SPLIT and done["reason"] == "keyed wrongly"
    assert done["old_entered_by"] == "head1" and stored_lights(state.store, lift_id)["entered_by"] == "org"


# --- store level: the jury of three -------------------------------------------------------------------


def test_two_votes_that_agree_decide_and_only_a_split_decision_can_be_reversed(db_target: str) -> None:
    state = new_state(db_target)
    store, engine = state.store, state.store.engine
    store.add_meet(MEET, appeal_limit=2)
    split_lift, white_lift = lift_of(state, "Ann Lee", 1), lift_of(state, "Ann Lee", 2)
    store.set_lights(split_lift, SPLIT, "head1")
    store.set_lights(white_lift, WHITE, "head1")
    first = store.file_appeal(split_lift, "ann lee", "coach", "deep enough")
    second = store.file_appeal(white_lift, "Ann Lee", "coach", "")
    assert first["lifter"] == "Ann Lee"  # the roster's spelling

    with pytest.raises(StoreError, match="needs a reason") as no_reason:
        cast_vote(engine, first["id"], "j1", "reverse", " ")
    assert no_reason.value.status == 422
    with pytest.raises(StoreError, match="uphold or reverse"):
        cast_vote(engine, first["id"], "j1", "abstain", "why not")
    one = cast_vote(engine, first["id"], "j1", "uphold", "knees visible above the hip")
    assert one["status"] == "pending" and not one["decided"]
    with pytest.raises(StoreError, match=r"j1 has voted on appeal .* already \(uphold\)"):
        cast_vote(engine, first["id"], "j1", "reverse", "changed my mind")
    two = cast_vote(engine, first["id"], "j2", "reverse", "crease below the knee at 2.5 s")
    assert two["status"] == "pending" and [v["vote"] for v in two["votes"]] == ["uphold", "reverse"]
    three = cast_vote(engine, first["id"], "j3", "reverse", "agree with j2")
    assert three["decided"] and three["status"] == "reversed"
    assert three["decided_by"] == "jury: j2, j3" and "j2: crease below the knee" in three["note"]
    with pytest.raises(StoreError, match="decided already \\(reversed\\)"):
        cast_vote(engine, first["id"], "j4", "uphold", "late")
    lift = store.lift(split_lift)
    assert lift is not None and lift["result"] == {"verdict": "good", "by": "jury"}
    # After the jury's reversal the lights stay as the jury judged them.
    with pytest.raises(StoreError, match="jury reversed"):
        correct_lights(engine, split_lift, WHITE, "org", "second thoughts")

    with pytest.raises(StoreError, match="unanimous \\(white / white / white\\)"):
        cast_vote(engine, second["id"], "j1", "reverse", "deep")
    cast_vote(engine, second["id"], "j1", "uphold", "clearly high")
    upheld = cast_vote(engine, second["id"], "j3", "uphold", "high")
    assert upheld["status"] == "upheld" and upheld["decided_by"] == "jury: j1, j3"
    with pytest.raises(StoreError, match="no appeal 999") as missing:
        cast_vote(engine, 999, "j1", "uphold", "x")
    assert missing.value.status == 404


def test_concurrent_votes_are_counted_one_by_one(db_target: str) -> None:
    """Three jurors press at once, on several appeals: the two reverse votes always decide, whatever
    the order (without the appeal row locked first, each could count only its own and the uphold)."""
    state = new_state(db_target)
    state.store.add_meet(MEET, appeal_limit=10)
    appeals = []
    for n in range(4):
        lift_id = lift_of(state, "Ann Lee", n + 1)
        state.store.set_lights(lift_id, SPLIT, "head1")
        appeals.append(state.store.file_appeal(lift_id, "Ann Lee", "coach", "")["id"])
    errors: list[str] = []

    # A connection pool per juror, like three dashboard workers (opened one after the other: opening
    # re-creates the audit trigger function, which PostgreSQL does not allow twice at once).
    engines = [DashboardStore(db_target).engine for _ in range(3)]

    def cast(engine: Engine, appeal_id: int, juror: str, vote: str, go: threading.Barrier) -> None:
        go.wait(10)
        try:
            cast_vote(engine, appeal_id, juror, vote, "pressed at once")
        except StoreError as exc:
            errors.append(str(exc))

    for appeal_id in appeals:
        go = threading.Barrier(3)
        threads = [
            threading.Thread(target=cast, args=(engine, appeal_id, juror, vote, go))
            for engine, (juror, vote) in zip(
                engines, (("j1", "uphold"), ("j2", "reverse"), ("j3", "reverse")), strict=True
            )
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    for engine in engines:
        engine.dispose()
    for appeal_id in appeals:
        appeal = state.store.appeal(appeal_id)
        assert appeal is not None and appeal["status"] == "reversed", appeal
        assert sorted(appeal["decided_by"].removeprefix("jury: ").split(", ")) == ["j2", "j3"]
    # Only a late uphold can be refused, and only because the appeal was decided already.
    assert all("decided already" in e for e in errors), errors


# --- store level: the roster --------------------------------------------------------------------------


def test_appeals_name_a_roster_lifter_and_the_limit_is_the_meets(databases: Databases) -> None:
    state = new_state(databases.new())
    store, engine = state.store, state.store.engine
    lift_id = lift_of(state, "Cy Doe", 1)
    # meet.state named Cy Doe, so the roster has the lifter (no meet row needed for that).
    assert lifters_of(engine, MEET) == [{"name": "Cy Doe", "division": None, "source": "meet.state"}]
    with pytest.raises(StoreError, match="create it first") as no_meet:
        add_lifters(engine, MEET, [("Ann Lee", None)])
    assert no_meet.value.status == 404
    store.add_meet(MEET, appeal_limit=1)
    out = add_lifters(engine, MEET, [("  ann   LEE ", "Open"), ("Ann Lee", None), ("cy doe", "M1")])
    assert (out["given"], out["added"]) == (3, 1)
    assert [(x["name"], x["division"]) for x in out["lifters"]] == [("ann LEE", "Open"), ("Cy Doe", "M1")]
    assert fold("  ann   LEE ") == fold("Ann Lee") == "ann lee"
    for bad in ([], [("", None)], [("x" * 201, None)]):
        with pytest.raises(StoreError) as refused:
            add_lifters(engine, MEET, bad)
        assert refused.value.status == 422

    # A lift whose lifter is not on the roster (typed by hand): the appeal is refused with 422.
    store.assign_lift(lift_id, "Cy Doh", 1, "squat")
    with pytest.raises(StoreError, match="'Cy Doh' is not on the roster of meet 'meet1'") as not_on:
        store.file_appeal(lift_id, "Cy Doh", "coach", "")
    assert not_on.value.status == 422
    store.assign_lift(lift_id, "Cy Doe", 1, "squat")
    with pytest.raises(StoreError, match="not yours") as not_yours:
        store.file_appeal(lift_id, "Ann Lee", "coach", "")
    assert not_yours.value.status == 403
    store.file_appeal(lift_id, "CY DOE", "coach", "")
    second = lift_of(state, "Cy Doe", 2)
    with pytest.raises(StoreError, match="used 1 of 1"):
        store.file_appeal(second, "Cy Doe", "coach", "")
    store.add_meet(MEET, appeal_limit=2)  # the meet's setting is what counts
    assert store.file_appeal(second, "Cy Doe", "coach", "")["lifter"] == "Cy Doe"

    other = new_state(databases.new())  # a meet without a roster says so
    bare = lift_of(other, "Ann Lee", 1)
    with other.store.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM roster")
    with pytest.raises(StoreError, match="has no roster yet"):
        other.store.file_appeal(bare, "Ann Lee", "lifter", "")


def test_a_signal_keeps_the_attempt_on_the_platform(db_target: str) -> None:
    announced = {
        "meet": MEET,
        "platform": PLATFORM,
        "lifter": "Ann Lee",
        "lift": "squat",
        "attempt_number": 2,
    }
    signal = {"meet": MEET, "platform": PLATFORM, "lifter": None, "command": "rack", "at_us": 5}
    assert merge_state(announced, signal) == {**signal, **announced}
    assert merge_state(None, signal) == signal
    nxt = {**announced, "lifter": "Bob Ray", "command": None}
    assert merge_state({**announced, "command": "rack"}, nxt) == nxt  # a new attempt clears the command
    store = DashboardStore(db_target)
    store.set_state({**announced, "at_us": 1})
    shown = store.set_state(signal)
    assert shown["lifter"] == "Ann Lee" and shown["command"] == "rack"
    assert store.states() == [shown]


def test_a_database_from_before_the_roster_and_the_votes_gets_their_tables(db_target: str) -> None:
    """``make_engine`` creates the tables a database made by an older release lacks, and its rows stay."""
    state = new_state(db_target)
    lift_id = lift_of(state, "Ann Lee", 1)
    with state.store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE appeal_votes")
        conn.exec_driver_sql("DROP TABLE roster")
    state.store.engine.dispose()
    again = new_state(db_target)  # the dashboard restarted on the old database
    assert again.store.lift(lift_id) is not None and lifters_of(again.store.engine, MEET) == []
    again.store.add_meet(MEET)
    add_lifters(again.store.engine, MEET, [("Ann Lee", None)])
    again.store.set_lights(lift_id, SPLIT, "head1")
    appeal = again.store.file_appeal(lift_id, "Ann Lee", "coach", "")
    assert cast_vote(again.store.engine, appeal["id"], "j1", "reverse", "deep")["votes"][0]["juror"] == "j1"
    again.store.engine.dispose()


# --- over HTTP ----------------------------------------------------------------------------------------


def clients(state: DashboardState, **accounts: tuple[str, str | None]) -> dict[str, TestClient]:
    app = create_app(state)
    out = {}
    for name, (role, lifter) in accounts.items():
        state.auth.create_user(name, role, PASSWORD, lifter)
        c = TestClient(app)
        assert c.post("/api/login", json={"name": name, "password": PASSWORD}, headers=OWN).status_code == 200
        out[name] = c
    return out


def test_the_rulebook_over_http_with_the_audit_chain(db_target: str) -> None:
    state = new_state(db_target)
    c = clients(
        state,
        org=("organizer", None),
        ref=("head_referee", None),
        side=("side_referee", None),
        j1=("jury", None),
        j2=("jury", None),
        j3=("jury", None),
        ann=("lifter", "Ann Lee"),
    )
    org, ref = c["org"], c["ref"]
    assert org.post("/api/meets", json={"name": MEET}, headers=OWN).status_code == 200
    # The organizer sets the appeal limit through the API; file_appeal counts against it.
    assert org.patch(f"/api/meets/{MEET}", json={"appeal_limit": 2}, headers=OWN).json()["appeal_limit"] == 2
    r = org.post(
        f"/api/meets/{MEET}/roster",
        json={"lifters": ["Ann Lee", {"name": "Bo", "division": "T1"}]},
        headers=OWN,
    )
    assert r.status_code == 200 and r.json()["added"] == 2
    assert org.post(f"/api/meets/{MEET}/roster", json={"lifters": []}, headers=OWN).status_code == 422
    assert org.post("/api/meets/nope/roster", json={"lifters": ["A"]}, headers=OWN).status_code == 404
    assert [x["name"] for x in c["ann"].get(f"/api/meets/{MEET}/roster").json()] == ["Ann Lee", "Bo"]
    assert ref.post(f"/api/meets/{MEET}/roster", json={"lifters": ["A"]}, headers=OWN).status_code == 403

    lifts = [lift_of(state, "Ann Lee", n) for n in (1, 2, 3)]
    assert ref.post(f"/api/lifts/{lifts[0]}/lights", json=SPLIT, headers=OWN).status_code == 200
    again = c["side"].post(f"/api/lifts/{lifts[0]}/lights", json=WHITE, headers=OWN)
    assert again.status_code == 409 and "official" in again.json()["detail"]
    correction = {**WHITE, "reason": "head referee keyed red by mistake"}
    assert (
        ref.post(f"/api/lifts/{lifts[0]}/lights/correction", json=correction, headers=OWN).status_code == 403
    )
    no_reason = org.post(
        f"/api/lifts/{lifts[0]}/lights/correction", json={**WHITE, "reason": ""}, headers=OWN
    )
    assert no_reason.status_code == 422 and "reason" in no_reason.json()["detail"]
    fixed = org.post(f"/api/lifts/{lifts[0]}/lights/correction", json=correction, headers=OWN)
    assert fixed.status_code == 200 and fixed.json()["lift"]["lights_majority"] == "good"
    org.post(
        f"/api/lifts/{lifts[0]}/lights/correction", json={**SPLIT, "reason": "video shows red"}, headers=OWN
    )

    # Appeals: the select's lifter must be the account's; a lifter not on the roster is a clear 422.
    ann = c["ann"]
    other = ann.post("/api/appeals", json={"lift_id": lifts[0], "lifter": "Bo"}, headers=OWN)
    assert other.status_code == 403 and "speaks for Ann Lee" in other.json()["detail"]
    appeal = ann.post(
        "/api/appeals", json={"lift_id": lifts[0], "lifter": "ann lee", "reason": "deep"}, headers=OWN
    )
    assert appeal.status_code == 200 and appeal.json()["lifter"] == "Ann Lee"
    assert ann.post("/api/appeals", json={"lift_id": lifts[1]}, headers=OWN).status_code == 200  # 2 of 2
    third = ann.post("/api/appeals", json={"lift_id": lifts[2]}, headers=OWN)
    assert third.status_code == 409 and "2 of 2" in third.json()["detail"]
    state.store.assign_lift(lifts[2], "Ann Leigh", 3, "squat")
    state.auth.create_user("leigh", "coach", PASSWORD, "Ann Leigh")
    leigh = TestClient(ann.app)
    leigh.post("/api/login", json={"name": "leigh", "password": PASSWORD}, headers=OWN)
    off_roster = leigh.post("/api/appeals", json={"lift_id": lifts[2]}, headers=OWN)
    assert off_roster.status_code == 422 and "not on the roster" in off_roster.json()["detail"]

    # The jury: a vote each, a reason each; the second agreeing vote decides.
    vote = f"/api/appeals/{appeal.json()['id']}/vote"
    missing = c["j1"].post(vote, json={"vote": "reverse"}, headers=OWN)
    assert missing.status_code == 422 and missing.json()["detail"] == "a jury vote needs a reason"
    assert (
        c["j1"]
        .post(vote, json={"vote": "reverse", "reason": "deep on camera 1"}, headers=OWN)
        .json()["status"]
        == "pending"
    )
    twice = c["j1"].post(vote, json={"vote": "uphold", "reason": "hm"}, headers=OWN)
    assert twice.status_code == 409 and "already" in twice.json()["detail"]
    assert org.post(vote, json={"vote": "uphold", "reason": "x"}, headers=OWN).status_code == 403
    assert (
        c["j2"].post(vote, json={"vote": "uphold", "reason": "not convinced"}, headers=OWN).json()["status"]
        == "pending"
    )
    decided = c["j3"].post(
        vote, json={"vote": "reverse", "reason": "below parallel at the bottom frame"}, headers=OWN
    )
    assert decided.json()["status"] == "reversed"
    shown = next(a for a in ann.get("/api/appeals").json() if a["id"] == appeal.json()["id"])
    assert [(v["juror"], v["vote"]) for v in shown["votes"]] == [
        ("j1", "reverse"),
        ("j2", "uphold"),
        ("j3", "reverse"),
    ]
    assert ann.get(f"/api/lifts/{lifts[0]}").json()["result"] == {"verdict": "good", "by": "jury"}

    entries = state.audit.entries(limit=1000)
    corrected = [e["details"] for e in entries if e["action"] == "lights_corrected"]
    assert corrected[0]["old"] == {k: SPLIT[k] for k in SPLIT} and corrected[0]["new"] == WHITE
    assert corrected[0]["reason"] == "head referee keyed red by mistake"
    votes = [
        (e["actor"], e["details"]["vote"], e["details"]["reason"])
        for e in entries
        if e["action"] == "jury_vote"
    ]
    assert votes == [
        ("j1", "reverse", "deep on camera 1"),
        ("j2", "uphold", "not convinced"),
        ("j3", "reverse", "below parallel at the bottom frame"),
    ]
    (final,) = [e for e in entries if e["action"] == "appeal_decided"]
    assert final["details"]["status"] == "reversed" and len(final["details"]["votes"]) == 3
    assert {"roster_saved", "lights_entered"} <= {e["action"] for e in entries}
    assert state.audit.verify().ok


def test_an_openlifter_file_fills_the_roster(db_target: str) -> None:
    from tests.test_openlifter import MEET as OPENLIFTER_MEET

    state = new_state(db_target)
    org = clients(state, org=("organizer", None))["org"]
    org.post("/api/meets", json={"name": MEET}, headers=OWN)
    url = f"/api/meets/{MEET}/roster/openlifter"
    files = {"file": ("test.openlifter", json.dumps(OPENLIFTER_MEET).encode(), "application/json")}
    r = org.post(url, files=files, headers=OWN)
    assert r.status_code == 200, r.text
    assert [(x["name"], x["division"], x["source"]) for x in r.json()["lifters"]] == [
        ("Ann Smith", "Open", "openlifter"),
        ("Bob Jones", "Open", "openlifter"),  # "Bob  Jones" in the file
    ]
    for body, message in ((b"not json", "not JSON"), (b'{"registration": {}}', "not an OpenLifter meet")):
        bad = org.post(url, files={"file": ("x.openlifter", body, "application/json")}, headers=OWN)
        assert bad.status_code == 422 and message in bad.json()["detail"]
    assert org.post(url, headers=OWN).status_code == 422  # no file at all


def test_a_signal_without_a_broker_shows_on_the_platform_and_is_audited(db_target: str) -> None:
    state = new_state(db_target)
    c = clients(state, ref=("head_referee", None), side=("side_referee", None))
    url = f"/api/platforms/{MEET}/{PLATFORM}/signal"
    assert (
        c["ref"].post(url, json={"signal": "squat"}, headers=OWN).status_code == 404
    )  # no such platform yet
    state.on_state(
        {"meet": MEET, "platform": PLATFORM, "lifter": "Ann Lee", "lift": "squat", "attempt_number": 1}
    )
    assert c["ref"].get("/api/platforms").json() == [{"meet": MEET, "name": PLATFORM}]
    assert c["side"].post(url, json={"signal": "squat"}, headers=OWN).status_code == 403  # head referee only
    assert c["ref"].post(url, json={"signal": "press"}, headers=OWN).status_code == 422
    before = time.time_ns() // 1000
    r = c["ref"].post(url, json={"signal": "squat"}, headers=OWN)
    assert r.status_code == 200 and r.json()["via"] == "this dashboard (no broker)"
    assert before <= r.json()["at_us"] <= time.time_ns() // 1000
    (shown,) = state.store.states()
    assert (
        shown["command"] == "squat" and shown["lifter"] == "Ann Lee" and shown["at_us"] == r.json()["at_us"]
    )
    (entry,) = [e for e in state.audit.entries() if e["action"] == "signal"]
    assert (
        entry["actor"] == "ref"
        and entry["target"] == f"{MEET}/{PLATFORM}"
        and entry["details"]["signal"] == "squat"
    )


# --- through the real broker, into the real referee ---------------------------------------------------


def referee_cards(state_msg: StateMsg, start_us: int) -> tuple[list[str], list[str]]:
    """The referee processor's call on a squat that starts ``start_us``, with the signal delivered after
    the stream's first frame (a signal reaches the referees of cameras that are streaming)."""
    processor = RefereeProcessor()
    frames = squat_session([1.3], start_us=start_us)

    def pose(f: Any) -> PoseMsg:
        return PoseMsg(
            meet=MEET,
            platform=PLATFORM,
            camera="side",
            stream_start_us=start_us,
            seq=0,
            frame=None if f is None else f.to_json(),
            end_of_stream=f is None,
        )

    out = processor.handle(pose(frames[0]))
    processor.handle_state(state_msg)
    for f in [*frames[1:], None]:
        out += processor.handle(pose(f))
    (decision,) = [d for d, _ in out if d.camera == "side"]
    return list(decision.attempt["cards"]), list(decision.attempt["reasons"])


@pytest.mark.integration
def test_the_head_referees_squat_reaches_the_referee_through_the_broker(
    db_target: str, broker: TansuBroker
) -> None:
    suffix = uuid.uuid4().hex[:8]
    topics = FeedTopics(
        *(f"{name}-{suffix}" for name in ("decisions", "explanations", "state", "poses", "audit"))
    )
    asyncio.run(ensure_topics(broker.bootstrap, [topics.decisions, topics.explanations, topics.state]))
    state = new_state(db_target)
    state.auth.create_user("ref", "head_referee", PASSWORD)
    state.on_state(
        {"meet": MEET, "platform": PLATFORM, "lifter": "Ann Lee", "lift": "squat", "attempt_number": 1}
    )
    feed = with_state_publisher(
        kafka_feed(broker.bootstrap, group_id=f"dash-{suffix}", topics=topics, poses=False),
        StatePublisher(broker.bootstrap, topics.state),
    )
    with TestClient(create_app(state, feed=feed)) as c:
        c.post("/api/login", json={"name": "ref", "password": PASSWORD}, headers=OWN)
        r = c.post(f"/api/platforms/{MEET}/{PLATFORM}/signal", json={"signal": "squat"}, headers=OWN)
        assert r.status_code == 200 and r.json()["via"] == "meet.state"
        sent_at = r.json()["at_us"]
        # Back on the dashboard's own feed: the platform shows it (nothing else applied it).
        deadline = time.monotonic() + 30
        while state.store.states()[0].get("command") != "squat":
            assert time.monotonic() < deadline, "the signal never came back from the broker"
            time.sleep(0.1)
        assert state.store.states()[0]["lifter"] == "Ann Lee"

    async def read_topic() -> list[bytes]:
        consumer = make_consumer(broker.bootstrap, None, topics.state, auto_offset_reset="earliest")
        await consumer.start()
        try:
            values: list[bytes] = []
            deadline = time.monotonic() + 15
            while not values and time.monotonic() < deadline:
                got = await consumer.getmany(timeout_ms=1000)
                values += [rec.value for recs in got.values() for rec in recs if rec.value is not None]
            return values
        finally:
            await consumer.stop()

    (raw,) = asyncio.run(read_topic())
    msg = StateMsg.parse(raw)  # the referee's own schema reads it
    assert (msg.meet, msg.platform, msg.command, msg.at_us) == (MEET, PLATFORM, "squat", sent_at)
    assert msg.lifter is None and msg.official is None  # names no attempt: attempt ids stay as they were
    # The referee compares the signal with the descent: a descent that began 1.5 s before it earns
    # the yellow card; one that began after it does not.
    early_cards, early_reasons = referee_cards(msg, start_us=sent_at - 3_000_000)
    assert "yellow" in early_cards and any("before the Squat signal" in x for x in early_reasons)
    cards, reasons = referee_cards(msg, start_us=sent_at - 1_000_000)
    assert "yellow" not in cards and not any("Squat signal" in x for x in reasons)
