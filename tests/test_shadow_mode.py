"""Issue 12, item 5: shadow mode. The system's calls are hidden from every role but the organizer until
the attempt's official lights are in — on every path: the REST lists and single lifts, the replay, the
CSV history, the agreement report, and the live WebSocket (snapshot, live events, ``?since=N``
catch-up) — and the call is published to everyone once the lights arrive.

Store-level cases are plain functions taking a store (``check_*``), run on SQLite and PostgreSQL by
the ``db_target`` fixture; the WebSocket cases run the real app under uvicorn with real clients."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from dashboard.app import create_app
from dashboard.auth import ROLES, Auth
from dashboard.shadow import HIDDEN, Redactor, set_shadow, shadow_meets
from dashboard.state import DashboardState
from dashboard.store import DashboardStore
from tests.browser import LiveServer, synthetic_decisions
from tests.test_dashboard import FAST_HASHER, OWN, PASSWORD

MEET, PLATFORM = "meet1", "platform-A"
WHITE: dict[str, str | None] = {"left": "good", "head": "good", "right": "good"}
# The decision's reason names the measured depth: it must never reach a reader the call is hidden from.
TELLTALE = "hip crease"


def _state(target: str) -> DashboardState:
    store = DashboardStore(target)
    state = DashboardState(store, auth=Auth(store.engine, hasher=FAST_HASHER))
    for role in ROLES:
        state.auth.create_user(role, role, PASSWORD, "Ann Lee" if role in ("lifter", "coach") else None)
    state.store.add_meet(MEET)
    return state


#: Ann Lee's first squat, as ``meet.state`` names it.
ANN_FIRST_SQUAT: dict[str, Any] = {
    "meet": MEET,
    "platform": PLATFORM,
    "lifter": "Ann Lee",
    "lift": "squat",
    "attempt_number": 1,
    "weight_kg": 180.0,
}


def _lifter_on_platform(state: DashboardState) -> None:
    state.on_state({**ANN_FIRST_SQUAT, "at_us": 0})


def _official(lights: dict[str, str]) -> dict[str, Any]:
    """The meet software's official lights for Ann Lee's first squat (as the LiftingCast link sends)."""
    return {**ANN_FIRST_SQUAT, "official": {"lights": lights, "source": "liftingcast"}}


# --- store level (both back ends) ------------------------------------------------------------------------


def check_shadow_setting_and_redaction(store: DashboardStore) -> None:
    state = DashboardState(store, auth=Auth(store.engine, hasher=FAST_HASHER))
    store.add_meet(MEET)
    store.add_meet("other")
    assert shadow_meets(store) == set()
    assert {m["name"]: m["shadow"] for m in store.config()["meets"]} == {MEET: False, "other": False}
    set_shadow(store, MEET, True)
    assert shadow_meets(store) == {MEET}
    assert {m["name"]: m["shadow"] for m in store.config()["meets"]} == {MEET: True, "other": False}
    store.add_meet(MEET, appeal_limit=2)  # saving the meet again keeps its shadow setting
    assert shadow_meets(store) == {MEET}

    (msg,) = synthetic_decisions([1.3])
    state.on_decision(msg)
    (lift,) = store.lifts()
    view = Redactor(store)
    hidden = view.lift(lift)
    assert hidden["hidden"] == HIDDEN and hidden["fused"] is None
    assert TELLTALE not in json.dumps(hidden) and "margin_cm" not in json.dumps(hidden)
    assert hidden["cameras"][0]["attempt"]["capture_us"] == msg["attempt"]["capture_us"]  # still on record
    (item,) = view.attempts(store.recent_attempts())
    assert item["hidden"] == HIDDEN and "verdict" not in item["attempt"] and item["explanation"] is None
    # Two lights are not all three: still hidden (the third referee has not voted).
    store.set_lights(lift["id"], {"left": "good", "head": "good"}, "head")
    assert Redactor(store).lift(store.lifts()[0]).get("hidden") == HIDDEN
    store.set_lights(lift["id"], WHITE, "head")
    (lift,) = store.lifts()
    assert (
        Redactor(store).lift(lift) is lift
        and Redactor(store).attempts(store.recent_attempts())[0]["attempt"]["verdict"] == "good"
    )
    set_shadow(store, MEET, False)
    assert shadow_meets(store) == set()


def test_shadow_setting_and_redaction_in_the_store(db_target: str) -> None:
    store = DashboardStore(db_target)
    try:
        check_shadow_setting_and_redaction(store)
    finally:
        store.engine.dispose()


# --- HTTP ----------------------------------------------------------------------------------------------


def _login(c: TestClient, role: str) -> TestClient:
    r = c.post("/api/login", json={"name": role, "password": PASSWORD}, headers=OWN)
    assert r.status_code == 200, r.text
    return c


def test_every_rest_path_hides_the_call_from_all_but_the_organizer_until_the_lights(db_target: str) -> None:
    state = _state(db_target)
    app = create_app(state)
    clients = {role: _login(TestClient(app), role) for role in ROLES}
    try:
        org, ref = clients["organizer"], clients["head_referee"]
        # The organizer's setting: only the organizer, only an existing meet, shown in the config.
        assert ref.patch(f"/api/meets/{MEET}", json={"shadow": True}, headers=OWN).status_code == 403
        assert org.patch("/api/meets/nope", json={"shadow": True}, headers=OWN).status_code == 404
        assert org.patch(f"/api/meets/{MEET}", json={}, headers=OWN).status_code == 422
        assert org.patch(f"/api/meets/{MEET}", json={"shadow": "maybe"}, headers=OWN).status_code == 422
        r = org.patch(f"/api/meets/{MEET}", json={"shadow": True}, headers=OWN)
        assert r.status_code == 200 and r.json()["shadow"] is True
        assert [m["shadow"] for m in org.get("/api/config").json()["meets"]] == [True]
        assert ("organizer", "meet_saved") in [(e["actor"], e["action"]) for e in state.audit.entries()]

        _lifter_on_platform(state)
        for msg in synthetic_decisions([1.3]):
            state.on_decision(msg)
        (lift,) = state.store.lifts()
        lift_id = lift["id"]
        assert lift["fused"]["verdict"] == "good" and lift["lifter"] == "Ann Lee"

        def paths(c: TestClient) -> dict[str, Any]:
            return {
                p: c.get(p)
                for p in (
                    "/api/attempts",
                    "/api/lifts",
                    f"/api/lifts/{lift_id}",
                    f"/api/lifts/{lift_id}/replay",
                    "/api/lifts?call=good",
                    "/api/history.csv",
                    "/api/history.csv?call=good",
                    "/api/agreement",
                    "/api/agreement.csv",
                    "/agreement",
                )
            }

        for role in ROLES:
            got = paths(clients[role])
            for path, r in got.items():
                assert r.status_code == 200, (role, path, r.text)
                if role == "organizer":
                    continue
                assert TELLTALE not in r.text and "18.9" not in r.text, (role, path)
            if role == "organizer":
                assert TELLTALE in got["/api/attempts"].text
                assert got[f"/api/lifts/{lift_id}"].json()["fused"]["verdict"] == "good"
                assert [x["id"] for x in got["/api/lifts?call=good"].json()] == [lift_id]
                assert got[f"/api/lifts/{lift_id}/replay"].json()["panes"][0]["verdict"] == "good"
                continue
            # Still on record (who, which attempt), with the reason it is not shown.
            (item,) = got["/api/attempts"].json()
            assert item["hidden"] == HIDDEN and item["lifter"] == "Ann Lee" and item["weight_kg"] == 180.0
            assert "verdict" not in item["attempt"] and item["official"] is None
            one = got[f"/api/lifts/{lift_id}"].json()
            assert one["hidden"] == HIDDEN and one["fused"] is None and one["lifter"] == "Ann Lee"
            assert got["/api/lifts"].json()[0]["hidden"] == HIDDEN
            assert got["/api/lifts?call=good"].json() == []  # a filter on the call would tell it
            pane = got[f"/api/lifts/{lift_id}/replay"].json()["panes"][0]
            assert pane["hidden"] == HIDDEN and pane["frames"] == [] and pane["margins"] == []
            assert pane["verdict"] is None
            (row,) = csv.DictReader(io.StringIO(got["/api/history.csv"].text))
            assert row["system_call"] == "hidden" and row["margin_cm"] == "" and row["confidence"] == ""
            assert list(csv.DictReader(io.StringIO(got["/api/history.csv?call=good"].text))) == []
            agreement = got["/api/agreement"].json()
            assert agreement["hidden"] == 1 and agreement["attempts"][0]["system"] == "hidden"

        # The referees' lights are in: everyone sees the call now.
        r = ref.post(f"/api/lifts/{lift_id}/lights", json=WHITE, headers=OWN)
        assert r.status_code == 200 and r.json()["fused"]["verdict"] == "good"
        for role in ROLES:
            c = clients[role]
            assert c.get(f"/api/lifts/{lift_id}").json()["fused"]["verdict"] == "good", role
            assert c.get("/api/attempts").json()[0]["attempt"]["verdict"] == "good", role
            assert c.get(f"/api/lifts/{lift_id}/replay").json()["panes"][0]["frames"] is not None
            assert [x["id"] for x in c.get("/api/lifts?call=good").json()] == [lift_id], role
            assert c.get("/api/agreement").json()["agree"] == 1, role

        # Shadow mode off: nothing is hidden, lights or not.
        for msg in synthetic_decisions([0.6], start_us=1_767_000_100_000_000):
            state.on_decision(msg)
        assert ref.get("/api/lifts").json()[0].get("hidden") == HIDDEN
        assert org.patch(f"/api/meets/{MEET}", json={"shadow": False}, headers=OWN).json()["shadow"] is False
        assert ref.get("/api/lifts").json()[0]["fused"]["verdict"] == "no_lift"
    finally:
        for c in clients.values():
            c.close()
        state.store.engine.dispose()


# --- the live WebSocket, on the real server ----------------------------------------------------------------


def _session(server: LiveServer, role: str) -> str:
    r = httpx.post(
        f"{server.url}/api/login", json={"name": role, "password": PASSWORD}, headers={"origin": server.url}
    )
    assert r.status_code == 200, r.text
    return f"meetvar_session={r.cookies['meetvar_session']}"


def _ws(server: LiveServer, cookie: str, since: int | None = None) -> ClientConnection:
    url = server.url.replace("http://", "ws://") + "/ws" + ("" if since is None else f"?since={since}")
    return connect(url, origin=Origin(server.url), additional_headers={"Cookie": cookie}, open_timeout=10)


def _recv(ws: ClientConnection) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(ws.recv(timeout=10))
    return event


def _until(ws: ClientConnection, kind: str, **match: Any) -> dict[str, Any]:
    for _ in range(50):
        event = _recv(ws)
        if event["type"] == kind and all(event.get(k) == v for k, v in match.items()):
            return event
    raise AssertionError(f"no {kind} event")


def test_the_websocket_redacts_per_client_and_reveals_when_the_official_lights_arrive(db_target: str) -> None:
    state = _state(db_target)
    set_shadow(state.store, MEET, True)
    (msg,) = synthetic_decisions([1.3])
    explanation = {
        "schema_version": 1,
        "attempt_id": msg["attempt_id"],
        "model": "template",
        "text": "The hip crease was 18.9 cm below the knee.",
        "prompt_hash": "x",
    }
    try:
        with LiveServer(state) as server:
            cookies = {
                role: _session(server, role) for role in ("organizer", "head_referee", "jury", "lifter")
            }
            server.call(_lifter_on_platform, state)
            with contextlib.ExitStack() as stack:
                sockets = {role: stack.enter_context(_ws(server, c)) for role, c in cookies.items()}
                cursor = 0
                for ws in sockets.values():
                    snap = _recv(ws)
                    assert snap["type"] == "snapshot" and snap["lifts"] == []
                    cursor = snap["cursor"]
                server.call(state.on_decision, msg)
                server.call(state.on_explanation, explanation)
                for role, ws in sockets.items():
                    decision = _until(ws, "decision")
                    lift_event = _until(ws, "lift")
                    said = _until(ws, "explanation")
                    if role == "organizer":
                        assert decision["attempt"]["verdict"] == "good"
                        assert lift_event["lift"]["fused"]["verdict"] == "good"
                        assert said["text"] == explanation["text"]
                    else:
                        # A referee (and the jury, a lifter) sees that an attempt was recorded, not the call.
                        assert decision["hidden"] == HIDDEN and "verdict" not in decision["attempt"], role
                        assert decision["attempt_id"] == msg["attempt_id"] and "seq" in decision
                        assert lift_event["lift"]["hidden"] == HIDDEN and lift_event["lift"]["fused"] is None
                        assert lift_event["lift"]["lifter"] == "Ann Lee"
                        assert said["hidden"] == HIDDEN and "text" not in said
                        for e in (decision, lift_event, said):
                            assert TELLTALE not in json.dumps(e) and "18.9" not in json.dumps(e), role

                # A referee's page that reconnects before the lights: the catch-up is redacted too,
                # and so is a fresh page's snapshot.
                with _ws(server, cookies["head_referee"], since=cursor) as again:
                    missed = []
                    while (e := _recv(again))["type"] != "caught_up":
                        missed.append(e)
                    kinds = [e["type"] for e in missed]
                    assert "decision" in kinds and "lift" in kinds and "explanation" in kinds
                    assert TELLTALE not in json.dumps(missed) and "18.9" not in json.dumps(missed)
                with _ws(server, cookies["head_referee"]) as fresh:
                    snap = _recv(fresh)
                    assert snap["lifts"][0]["hidden"] == HIDDEN and snap["attempts"][0]["hidden"] == HIDDEN
                    assert TELLTALE not in json.dumps(snap)
                with _ws(server, cookies["organizer"]) as fresh:
                    assert _recv(fresh)["lifts"][0]["fused"]["verdict"] == "good"

                # The meet software's official lights (2–1 good): the call is everyone's now, in a
                # "lift" event and a "revealed" event with each camera's decision.
                server.call(state.on_state, _official({"left": "good", "head": "good", "right": "bad"}))
                for role, ws in sockets.items():
                    lift_event = _until(ws, "lift")
                    assert lift_event["lift"]["fused"]["verdict"] == "good", role
                    assert lift_event["lift"]["lights_majority"] == "good"
                    revealed = _until(ws, "revealed")
                    assert revealed["official"] == {
                        "lights": {"left": "good", "head": "good", "right": "bad"},
                        "result": "good",
                    }
                    assert revealed["attempts"][0]["attempt"]["verdict"] == "good", role
                    assert TELLTALE in json.dumps(revealed["attempts"])
                # And the referee's catch-up now shows what it missed as it stands: revealed.
                with _ws(server, cookies["head_referee"], since=cursor) as again:
                    missed = []
                    while (e := _recv(again))["type"] != "caught_up":
                        missed.append(e)
                    decisions = [e for e in missed if e["type"] == "decision"]
                    assert decisions and decisions[0]["attempt"]["verdict"] == "good"
                    assert [e["type"] for e in missed].count("revealed") == 1
    finally:
        state.store.engine.dispose()


@pytest.mark.parametrize("shadow", [False, True])
def test_without_shadow_mode_nothing_is_hidden_and_the_organizer_always_sees(shadow: bool) -> None:
    state = _state(":memory:")
    if shadow:
        set_shadow(state.store, MEET, True)
    with LiveServer(state) as server:
        cookie = _session(server, "side_referee")
        with _ws(server, cookie) as ws:
            _recv(ws)
            (msg,) = synthetic_decisions([0.6])
            server.call(state.on_decision, msg)
            decision = _until(ws, "decision")
            assert ("hidden" in decision) is shadow
            assert (decision["attempt"].get("verdict") == "no_lift") is not shadow


def test_a_database_from_before_shadow_mode_gets_the_column(db_target: str) -> None:
    """A venue's database made by an older release has a meets table without ``shadow``: opening it
    adds the column (off for the meets already there) instead of failing on the first query."""
    from sqlalchemy import create_engine, text

    from dashboard.db import database_url

    old = create_engine(database_url(db_target))
    with old.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE meets (name VARCHAR(100) PRIMARY KEY, appeal_limit INTEGER NOT NULL, "
                "created_us BIGINT NOT NULL)"
            )
        )
        conn.execute(text("INSERT INTO meets VALUES ('nationals', 2, 1)"))
    old.dispose()
    store = DashboardStore(db_target)
    try:
        assert store.config()["meets"] == [
            {"name": "nationals", "appeal_limit": 2, "created_us": 1, "shadow": False}
        ]
        set_shadow(store, "nationals", True)
        assert shadow_meets(store) == {"nationals"}
        DashboardStore(db_target).engine.dispose()  # opening it again changes nothing
        assert shadow_meets(store) == {"nationals"}
    finally:
        store.engine.dispose()


def test_the_hub_gives_each_client_its_own_copy_and_drops_hidden_live_words() -> None:
    """Redaction is decided once per event, then the hub hands each subscription the organizer's or
    the redacted copy; a hidden explanation's streamed words reach the organizer only."""
    state = _state(":memory:")
    set_shadow(state.store, MEET, True)
    organizer, referee = state.hub.subscribe(sees_calls=True), state.hub.subscribe(sees_calls=False)
    (msg,) = synthetic_decisions([1.3])
    state.on_decision(msg)
    state.publish(
        {"type": "explanation_delta", "attempt_id": msg["attempt_id"], "text": "18.9 cm"}, persist=False
    )

    def drain(q: Any) -> list[dict[str, Any]]:
        out = []
        while not q.empty():
            out.append(q.get_nowait())
        return out

    mine, theirs = drain(organizer), drain(referee)
    assert [e["type"] for e in mine] == ["decision", "lift", "explanation_delta"]
    assert [e["type"] for e in theirs] == ["decision", "lift"]
    assert [e.get("seq") for e in theirs] == [e.get("seq") for e in mine[:2]]  # same cursor
    assert "18.9" not in json.dumps(theirs) and "18.9" in json.dumps(mine)
