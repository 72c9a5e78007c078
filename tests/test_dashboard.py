"""The dashboard through its HTTP and WebSocket API: roles on every route, origin checks, sessions,
the hash-chained audit log, appeals and the jury, fusion, history, reconnect, replays and Claude's
streamed explanations against a local server that speaks the Messages API.

Every test runs twice, on SQLite and on a real PostgreSQL (ids end in ``[sqlite]`` / ``[postgres]``):
``new_state()`` takes a fresh, empty database of the current back end from the ``databases`` fixture
of tests/conftest.py, so the routes, the replay, the audit chain and the appeals are checked on the
database a venue deploys as well as on the default."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import av
import pytest
from argon2 import PasswordHasher
from fastapi.routing import APIRoute, APIWebSocketRoute
from fastapi.testclient import TestClient
from sqlalchemy import Connection, select, text
from starlette.routing import Mount, WebSocketRoute

from dashboard import db
from dashboard.app import create_app
from dashboard.auth import ROLES, Auth
from dashboard.fusion import fuse_cameras, official_result
from dashboard.replay import StoreChunkSource, archived_chunks, remux_clip
from dashboard.state import DashboardState
from dashboard.store import DashboardStore
from stream_processors.explainer import Explainer, build_prompt, decision_from_attempt, prompt_for_attempt
from stream_processors.object_store import LocalObjectStore
from tests.browser import STREAM_START_US, synthetic_decisions, with_verdict
from tests.postgres import Databases

OWN = {"origin": "http://testserver"}
PASSWORD = "a-long-test-password"
PUBLIC = {
    ("GET", "/"),
    ("POST", "/api/login"),
    ("POST", "/api/login/token"),
    ("POST", "/api/logout"),
    ("GET", "/api/health"),
    ("GET", "/healthz"),  # liveness, for orchestrators
    ("GET", "/metrics"),  # Prometheus scrapes without a session; counts only, nothing personal
}


# Real argon2id, with cheaper parameters than production so the suite stays fast on 2 cores.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)


# Where new_state() takes its databases while a test of this module runs (set by _on_each_backend);
# other modules that import new_state get an in-memory SQLite as before.
_databases: Databases | None = None


def new_state(
    target: str | Path | None = None, anonymous_viewer: bool = False, **kwargs: Any
) -> DashboardState:
    """A dashboard on ``target``, by default a fresh database of the back end under test."""
    if target is None:
        target = _databases.new() if _databases is not None else ":memory:"
    store = DashboardStore(target)
    auth = Auth(store.engine, anonymous_viewer=anonymous_viewer, hasher=FAST_HASHER)
    return DashboardState(store, auth=auth, **kwargs)


@pytest.fixture(autouse=True)
def _on_each_backend(databases: Databases, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test of this module on each back end: new_state() draws from ``databases``."""
    monkeypatch.setattr(sys.modules[__name__], "_databases", databases)


def drop_trigger(conn: Connection, name: str) -> None:
    """What a tamperer with the database's owner role can do; the syntax differs per back end."""
    on_table = " ON audit" if conn.dialect.name == "postgresql" else ""
    conn.execute(text(f"DROP TRIGGER {name}{on_table}"))


def user_name(role: str) -> str:
    return f"u-{role}"


@pytest.fixture(scope="module")
def world(module_databases: Databases) -> Iterator[tuple[DashboardState, dict[str, TestClient]]]:
    """One dashboard, one account and one logged-in client per role, and two lifts on record."""
    state = new_state(module_databases.new())
    for role in ROLES:
        state.auth.create_user(
            user_name(role), role, PASSWORD, "Lifter One" if role in ("lifter", "coach") else None
        )
    app = create_app(state)
    clients: dict[str, TestClient] = {}
    for role in ROLES:
        c = TestClient(app)
        c.__enter__()
        r = c.post("/api/login", json={"name": user_name(role), "password": PASSWORD}, headers=OWN)
        assert r.status_code == 200, r.text
        clients[role] = c
    for msg in synthetic_decisions([1.3, 0.6]):
        state.on_decision(msg)
    yield state, clients
    for c in clients.values():
        c.__exit__(None, None, None)


def _route_table() -> list[tuple[str, str]]:
    app = create_app(new_state())
    out = []
    for route in app.routes:
        if isinstance(route, APIRoute):
            out += [(m, route.path) for m in sorted(route.methods)]
    return out


def _allowed_roles(app: Any, method: str, path: str) -> frozenset[str]:
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path == path and method in route.methods:
            guards = [d.call for d in route.dependant.dependencies if hasattr(d.call, "allowed_roles")]
            assert len(guards) == 1, f"{method} {path} has no role guard"
            roles: frozenset[str] = guards[0].allowed_roles  # type: ignore[union-attr]
            return roles
    raise AssertionError(f"no route {method} {path}")


def test_the_route_table_has_no_unguarded_route() -> None:
    app = create_app(new_state())
    kinds = {type(r) for r in app.routes}
    assert kinds <= {APIRoute, APIWebSocketRoute, WebSocketRoute, Mount}
    for method, path in _route_table():
        if (method, path) not in PUBLIC:
            assert _allowed_roles(app, method, path)


@pytest.mark.parametrize(("method", "path"), [r for r in _route_table() if r not in PUBLIC])
def test_every_endpoint_refuses_no_session_and_the_wrong_roles(
    world: tuple[DashboardState, dict[str, TestClient]], method: str, path: str
) -> None:
    _, clients = world
    allowed = _allowed_roles(clients["viewer"].app, method, path)
    url = path.replace("{lift_id}", "1").replace("{appeal_id}", "1").replace("{name}", "nobody")
    anonymous = TestClient(clients["viewer"].app)
    assert anonymous.request(method, url, headers=OWN).status_code == 401
    for role in ROLES:
        code = clients[role].request(method, url, headers=OWN).status_code
        if role in allowed:
            assert code not in (401, 403), f"{role} refused on {method} {path}"
        else:
            assert code == 403, f"{role} got {code} on {method} {path}"


def test_unsafe_methods_need_our_own_origin(world: tuple[DashboardState, dict[str, TestClient]]) -> None:
    _, clients = world
    jury = clients["jury"]
    body = {"vote": "uphold", "reason": "the replay shows it"}
    assert (
        jury.post("/api/appeals/999/vote", json=body, headers={"origin": "http://evil.example"}).status_code
        == 403
    )
    assert jury.post("/api/appeals/999/vote", json=body).status_code == 403  # no Origin, no Referer
    assert (
        jury.post(
            "/api/appeals/999/vote", json=body, headers={"referer": "http://testserver/#appeals"}
        ).status_code
        == 404
    )
    assert jury.post("/api/appeals/999/vote", json=body, headers=OWN).status_code == 404
    # Login itself is origin-checked too (login CSRF).
    assert (
        jury.post(
            "/api/login", json={"name": "x", "password": "y"}, headers={"origin": "http://evil.example"}
        ).status_code
        == 403
    )


def test_websocket_refuses_a_foreign_origin_and_no_session(
    world: tuple[DashboardState, dict[str, TestClient]],
) -> None:
    from starlette.websockets import WebSocketDisconnect

    _, clients = world
    with (
        pytest.raises(WebSocketDisconnect),
        clients["viewer"].websocket_connect("/ws", headers={"origin": "http://evil.example"}) as ws,
    ):
        ws.receive_json()
    with (
        pytest.raises(WebSocketDisconnect),
        TestClient(clients["viewer"].app).websocket_connect("/ws", headers=OWN) as ws,
    ):
        ws.receive_json()
    with clients["viewer"].websocket_connect("/ws", headers=OWN) as ws:
        assert ws.receive_json()["type"] == "snapshot"


def test_sessions_are_signed_httponly_strict_cookies_and_passwords_argon2() -> None:
    state = new_state()
    assert state.auth.users() == []  # no default account, hence no default password
    state.auth.create_user("org", "organizer", PASSWORD)
    with state.store.engine.connect() as conn:
        stored = conn.execute(select(db.users.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    app = create_app(state)
    with TestClient(app, base_url="https://testserver") as c:
        r = c.post(
            "/api/login", json={"name": "org", "password": PASSWORD}, headers={"origin": "https://testserver"}
        )
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "secure" in cookie
        value = c.cookies["meetvar_session"]
        assert c.get("/api/me").json()["role"] == "organizer"
        assert (
            c.post(
                "/api/login",
                json={"name": "org", "password": "wrong-password"},
                headers={"origin": "https://testserver"},
            ).status_code
            == 401
        )
        c.post("/api/logout", headers={"origin": "https://testserver"})
        c.cookies.set("meetvar_session", value)  # a stolen cookie after logout is dead
        assert c.get("/api/me").status_code == 401
        c.cookies.set("meetvar_session", value[:-2] + "xx")  # a forged one never worked
        assert c.get("/api/me").status_code == 401
    # Sessions survive a restart of the dashboard (the signing key lives in the database).
    again = Auth(state.store.engine)
    assert again._signer.secret_key == state.auth._signer.secret_key  # type: ignore[attr-defined]


def test_login_tokens_work_once_and_throttle_guessing() -> None:
    state = new_state()
    org = state.auth.create_user("organizer", "organizer", None)
    token = state.auth.issue_login_token(org)
    with TestClient(create_app(state)) as c:
        assert c.post("/api/login/token", json={"token": token}, headers=OWN).json()["role"] == "organizer"
        assert c.post("/api/login/token", json={"token": token}, headers=OWN).status_code == 401
        assert (
            c.post("/api/login", json={"name": "organizer", "password": "x" * 12}, headers=OWN).status_code
            == 401
        )
        for _ in range(5):
            c.post("/api/login", json={"name": "victim", "password": "guess-guess"}, headers=OWN)
        assert (
            c.post("/api/login", json={"name": "victim", "password": "guess-guess"}, headers=OWN).status_code
            == 429
        )


def test_anonymous_viewer_reads_but_cannot_act() -> None:
    state = new_state(anonymous_viewer=True)
    for msg in synthetic_decisions([1.3]):
        state.on_decision(msg)
    with TestClient(create_app(state)) as c:
        assert len(c.get("/api/attempts").json()) == 1
        assert c.get("/api/me").json()["role"] == "viewer"
        assert c.post("/api/lifts/1/lights", json={"left": "good"}, headers=OWN).status_code == 403
        assert c.get("/api/audit").status_code == 403


def test_audit_log_is_hash_chained_and_tampering_is_detected(
    world: tuple[DashboardState, dict[str, TestClient]],
) -> None:
    state = new_state()
    state.auth.create_user("org", "organizer", PASSWORD)
    with TestClient(create_app(state)) as c:
        c.post("/api/login", json={"name": "org", "password": PASSWORD}, headers=OWN)
        c.post("/api/meets", json={"name": "meet1", "appeal_limit": 2}, headers=OWN)
        c.post("/api/platforms", json={"meet": "meet1", "name": "platform-A"}, headers=OWN)
        assert c.get("/api/audit/verify").json() == {
            "ok": True,
            "entries": 3,
            "first_bad_id": None,
            "problem": None,
        }
        entries = c.get("/api/audit").json()
        assert [e["action"] for e in entries] == ["login", "meet_saved", "platform_saved"]
        assert entries[1]["prev_hash"] == entries[0]["hash"]
        second = entries[1]["id"]
        for forbidden in ("UPDATE audit SET actor = 'someone'", "DELETE FROM audit"):
            with state.store.engine.begin() as conn, pytest.raises(Exception, match="append-only"):
                conn.execute(text(f"{forbidden} WHERE id = :id"), {"id": second})
        # A tamperer with the database's owner role can drop the guard: the chain still tells.
        with state.store.engine.begin() as conn:
            drop_trigger(conn, "audit_no_update")
            tampered = {"d": '{"appeal_limit":9}', "id": second}
            conn.execute(text("UPDATE audit SET details = :d WHERE id = :id"), tampered)
        r = c.get("/api/audit/verify")
        assert r.status_code == 409 and r.json()["first_bad_id"] == second
    # Opening the store again (a restart) puts the guard back.
    again = DashboardStore(state.store.engine.url.render_as_string(hide_password=False))
    with again.engine.begin() as conn, pytest.raises(Exception, match="append-only"):
        conn.execute(text("UPDATE audit SET actor = 'x'"))
    again.engine.dispose()
    state2 = new_state()
    for i in range(3):
        state2.audit.append("a", "jury", "x", f"t{i}")
    with state2.store.engine.begin() as conn:
        drop_trigger(conn, "audit_no_delete")
        conn.execute(text("DELETE FROM audit WHERE id = (SELECT max(id) FROM audit)"))
    assert not state2.audit.verify().ok  # removing the newest entry is caught by the head


def test_appeal_limit_and_the_jury_reverses_only_split_decisions() -> None:
    state = new_state()
    accounts = {
        "lifter": "Ann Lee",
        "coach": "Ann Lee",
        "jury": None,
        "head_referee": None,
        "organizer": None,
    }
    for role, lifter in accounts.items():
        state.auth.create_user(role, role, PASSWORD, lifter)
    state.auth.create_user("jury2", "jury", PASSWORD)  # a jury of three decides by majority
    for msg in synthetic_decisions([1.3, 0.6]):
        state.on_decision(msg)
    app = create_app(state)
    c = {role: TestClient(app) for role in [*accounts, "jury2"]}
    for role, client in c.items():
        client.post("/api/login", json={"name": role, "password": PASSWORD}, headers=OWN)
    lifts = sorted(lift["id"] for lift in state.store.lifts())
    # Appeals name a roster lifter (dashboard/roster.py).
    assert c["organizer"].post("/api/meets", json={"name": "meet1"}, headers=OWN).status_code == 200
    roster = {"lifters": ["Ann Lee"]}
    assert c["organizer"].post("/api/meets/meet1/roster", json=roster, headers=OWN).status_code == 200
    for n, lift_id in enumerate(lifts, 1):
        c["organizer"].post(
            f"/api/lifts/{lift_id}/assign", json={"lifter": "Ann Lee", "attempt_number": n}, headers=OWN
        )
    assert (
        c["lifter"]
        .post("/api/appeals", json={"lift_id": lifts[0], "reason": "I was deep"}, headers=OWN)
        .status_code
        == 200
    )
    second = c["coach"].post("/api/appeals", json={"lift_id": lifts[1]}, headers=OWN)
    assert second.status_code == 409 and "1 of 1" in second.json()["detail"]
    appeal = c["jury"].get("/api/appeals?status=pending").json()[0]
    vote = f"/api/appeals/{appeal['id']}/vote"
    reverse = {"vote": "reverse", "reason": "depth was reached"}
    assert c["jury"].post(vote, json=reverse, headers=OWN).status_code == 409  # no lights yet
    c["head_referee"].post(
        f"/api/lifts/{lifts[0]}/lights", json={"left": "good", "head": "good", "right": "good"}, headers=OWN
    )
    assert "unanimous" in c["jury"].post(vote, json=reverse, headers=OWN).json()["detail"]
    # Official lights are locked: re-entering them is refused; the organizer corrects, with a reason.
    split = {"left": "good", "head": "bad", "right": "bad"}
    again = c["head_referee"].post(f"/api/lifts/{lifts[0]}/lights", json=split, headers=OWN)
    assert again.status_code == 409 and "official" in again.json()["detail"]
    fixed = c["organizer"].post(
        f"/api/lifts/{lifts[0]}/lights/correction", json={**split, "reason": "keyed wrongly"}, headers=OWN
    )
    assert fixed.status_code == 200
    assert c["jury"].post(vote, json=reverse, headers=OWN).json()["status"] == "pending"  # one of three
    done = c["jury2"].post(vote, json=reverse, headers=OWN).json()
    assert done["status"] == "reversed" and [v["juror"] for v in done["votes"]] == ["jury", "jury2"]
    lift = c["jury"].get(f"/api/lifts/{lifts[0]}").json()
    assert lift["lights_majority"] == "no_lift" and lift["result"] == {"verdict": "good", "by": "jury"}
    uphold = {"vote": "uphold", "reason": "late"}
    assert c["jury"].post(vote, json=uphold, headers=OWN).status_code == 409  # decided once
    r = c["head_referee"].post(
        f"/api/lifts/{lifts[1]}/override",
        json={"verdict": "good", "reason": "knee landmark occluded"},
        headers=OWN,
    )
    assert r.status_code == 200
    actions = [e["action"] for e in state.audit.entries()]
    for action in (
        "login",
        "lift_assigned",
        "appeal_filed",
        "lights_entered",
        "lights_corrected",
        "jury_vote",
        "appeal_decided",
        "override",
    ):
        assert action in actions
    assert state.audit.verify().ok
    # The lifter sees only their own appeals.
    assert [a["lifter"] for a in c["lifter"].get("/api/appeals").json()] == ["Ann Lee"]


def test_fused_call_is_the_majority_of_cameras_and_ties_go_to_no_lift() -> None:
    base = synthetic_decisions([1.3])[0]
    good, bad, und = (
        with_verdict(base, v, cam)
        for v, cam in (("good", "left"), ("no_lift", "right"), ("undecided", "front"))
    )
    assert fuse_cameras([base])["verdict"] == base["attempt"]["verdict"] == "good"
    assert fuse_cameras([base, good, bad])["verdict"] == "good"
    assert fuse_cameras([base, bad])["verdict"] == "no_lift"
    assert fuse_cameras([base, bad, und])["votes"] == {"good": 1, "no_lift": 1, "undecided": 1}
    only_und = fuse_cameras([und])
    assert only_und["verdict"] == "undecided" and "depth not visible" in only_und["reasons"][0]
    assert official_result(None, [], [])["verdict"] is None
    # Three cameras of one squat make one lift in the store.
    state = new_state()
    for msg in (base, good, bad):
        state.on_decision(msg)
    # The referee's own fused message for the same lift is not a fourth camera.
    state.on_decision({**with_verdict(base, "good", "fused"), "attempt_id": "m/p/fused/0/1"})
    (lift,) = state.store.lifts()
    assert len(lift["cameras"]) == 3 and lift["fused"]["votes"] == {"good": 2, "no_lift": 1, "undecided": 0}


def test_history_filters_csv_and_shadow_agreement(
    world: tuple[DashboardState, dict[str, TestClient]],
) -> None:
    state = new_state()
    state.auth.create_user("ref", "head_referee", PASSWORD)
    for msg in synthetic_decisions([1.3, 0.6, 1.25]):
        state.on_decision(msg)
    with TestClient(create_app(state)) as c:
        c.post("/api/login", json={"name": "ref", "password": PASSWORD}, headers=OWN)
        lifts = {lift["rep"]: lift for lift in c.get("/api/lifts").json()}
        white, red = (
            {"left": "good", "head": "good", "right": "good"},
            {"left": "bad", "head": "bad", "right": "good"},
        )
        c.post(f"/api/lifts/{lifts[1]['id']}/lights", json=white, headers=OWN)  # agrees (good)
        c.post(f"/api/lifts/{lifts[2]['id']}/lights", json=white, headers=OWN)  # disagrees (system: no lift)
        c.post(f"/api/lifts/{lifts[3]['id']}/lights", json=red, headers=OWN)  # disagrees
        assert [x["rep"] for x in c.get("/api/lifts?call=no_lift").json()] == [2]
        agreement = c.get("/api/agreement").json()
        assert (agreement["with_lights"], agreement["agree"], agreement["disagree"], agreement["rate"]) == (
            3,
            1,
            2,
            0.3333,
        )
        rows = list(csv.DictReader(io.StringIO(c.get("/api/history.csv?call=good").text)))
        assert sorted(r["rep"] for r in rows) == ["1", "3"] and {r["referees"] for r in rows} == {
            "good",
            "no_lift",
        }


def test_a_page_that_reconnects_with_its_cursor_gets_exactly_what_it_missed() -> None:
    state = new_state(anonymous_viewer=True)
    first, second, third = synthetic_decisions([1.3, 0.6, 1.2])
    state.on_decision(first)
    with TestClient(create_app(state)) as c:
        with c.websocket_connect("/ws", headers=OWN) as ws:
            snap = ws.receive_json()
            assert snap["type"] == "snapshot" and len(snap["lifts"]) == 1
            cursor = snap["cursor"]
        state.on_decision(second)  # while the page is offline
        state.on_state(
            {"meet": "meet1", "platform": "platform-A", "lifter": "B", "attempt_number": 2, "at_us": 1}
        )
        with c.websocket_connect(f"/ws?since={cursor}", headers=OWN) as ws:
            missed = [ws.receive_json() for _ in range(4)]
            assert [e["type"] for e in missed] == ["decision", "lift", "state", "caught_up"]
            assert missed[0]["attempt_id"] == second["attempt_id"]
            assert [e["seq"] for e in missed[:3]] == sorted(e["seq"] for e in missed[:3])
            state.on_decision(third)  # and then live again
            assert ws.receive_json()["attempt_id"] == third["attempt_id"]
        with c.websocket_connect("/ws?since=999999", headers=OWN) as ws:  # a cursor from another database
            assert ws.receive_json()["type"] == "snapshot"


def test_a_replay_clip_is_the_archived_chunks_remuxed_with_exact_frame_times(tmp_path: Path) -> None:
    from ingest.normalize import chunks_from_file
    from tests.browser import CLIP

    store = LocalObjectStore(tmp_path)
    key = "meet1/platform-A/side"
    times: list[int] = []
    for chunk in chunks_from_file(CLIP, start_us=STREAM_START_US, max_frames=60):
        store.put(f"{key}/{STREAM_START_US}/{chunk.seq:08d}.ts", chunk.data)  # no .json: times from the TS
        times += chunk.capture_us
    source = StoreChunkSource(store)
    chunks = archived_chunks(source, key, times[20], times[40])
    assert [c.seq for c in chunks] == [1, 2]  # 15-frame chunks overlapping frames 20..40
    clip = remux_clip(source, chunks)
    assert clip.t0_capture_us == times[15] and clip.capture_us == times[15:45]
    with av.open(io.BytesIO(clip.mp4)) as mp4:
        decoded = [f.time for f in mp4.decode(video=0)]
    assert len(decoded) == 30
    for t, capture in zip(decoded, clip.capture_us, strict=True):
        assert t is not None and abs(clip.t0_capture_us + t * 1e6 - capture) < 20  # 90 kHz rounding
    state = new_state(anonymous_viewer=True, archive=source)
    msg = synthetic_decisions([1.3])[0]
    msg["attempt"]["capture_us"] = {"start": times[22], "bottom": times[30], "end": times[36]}
    state.on_decision(msg)
    with TestClient(create_app(state)) as c:
        pane = c.get("/api/lifts/1/replay").json()["panes"][0]
        assert (
            pane["clip_error"] is None and pane["t0_capture_us"] == times[0]
        )  # window = start-1 s … end+1 s
        whole = c.get(pane["clip_url"])
        assert whole.headers["content-type"] == "video/mp4" and whole.headers["accept-ranges"] == "bytes"
        part = c.get(pane["clip_url"], headers={"range": "bytes=0-99"})
        assert part.status_code == 206 and part.content == whole.content[:100]


def test_poses_of_the_attempt_window_are_kept_for_the_replay() -> None:
    from stream_processors.schemas import PoseMsg
    from tests.synthetic import squat_session

    state = new_state()
    frames = squat_session([1.3], start_us=STREAM_START_US)
    decision = synthetic_decisions([1.3])[0]
    times = decision["attempt"]["capture_us"]
    end_index = next(i for i, f in enumerate(frames) if f.capture_us > times["end"])
    poses = [
        PoseMsg(
            meet="meet1",
            platform="platform-A",
            camera="side",
            stream_start_us=STREAM_START_US,
            seq=0,
            frame=f.to_json(),
        ).model_dump(mode="json")
        for f in frames
    ]
    for p in poses[:end_index]:
        state.on_pose(p)
    state.on_decision(decision)  # the decision arrives before the last second of its window
    for p in poses[end_index:]:
        state.on_pose(p)
    kept = state.store.pose_frames(decision["attempt_id"])
    lo, hi = times["start"] - 1_000_000, times["end"] + 1_000_000
    assert [f["capture_us"] for f in kept] == [f.capture_us for f in frames if lo <= f.capture_us <= hi]
    assert len(kept[0]["keypoints"]) == 33
    state.on_decision(decision)  # redelivered: nothing doubles
    assert len(state.store.pose_frames(decision["attempt_id"])) == len(kept)
    assert len(state.store.recent_attempts()) == 1


# --- Claude, streamed, against a local Messages API ------------------------------------------------


class FakeClaude:
    """A local HTTP server that speaks enough of the Messages API, streaming included."""

    def __init__(self, pieces: list[str], delay_s: float = 0.0) -> None:
        self.pieces = pieces
        self.delay_s = delay_s
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                key = self.headers.get("x-api-key") or self.headers.get("authorization", "").removeprefix(
                    "Bearer "
                )
                outer.requests.append({"path": self.path, "body": body, "key": key})
                time.sleep(outer.delay_s)
                msg = {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": body["model"],
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 50, "output_tokens": 1},
                }
                if not body.get("stream"):
                    out = {
                        **msg,
                        "content": [{"type": "text", "text": "".join(outer.pieces)}],
                        "stop_reason": "end_turn",
                    }
                    data = json.dumps(out).encode()
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()

                def event(name: str, payload: dict[str, Any]) -> None:
                    self.wfile.write(
                        f"event: {name}\ndata: {json.dumps({'type': name, **payload})}\n\n".encode()
                    )
                    self.wfile.flush()

                event("message_start", {"message": msg})
                event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
                for piece in outer.pieces:
                    event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}})
                event("content_block_stop", {"index": 0})
                event(
                    "message_delta",
                    {
                        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                        "usage": {"output_tokens": 30},
                    },
                )
                event("message_stop", {})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True  # closing does not wait for a deliberately slow answer
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_prompt_is_the_same_from_the_message_and_the_template_is_identical() -> None:
    from referee.explanation import template_explanation
    from referee.referee import Referee
    from tests.synthetic import squat_session

    referee = Referee(origin_us=STREAM_START_US)
    decisions = [d for f in squat_session([1.3, 0.6], start_us=STREAM_START_US) if (d := referee.push(f))]
    if (last := referee.finish()) is not None:
        decisions.append(last)
    for d in decisions:
        as_json = json.loads(json.dumps(d.to_json()))
        assert prompt_for_attempt(as_json) == build_prompt(d)
        assert template_explanation(decision_from_attempt(as_json)) == template_explanation(d)
        assert "margin_cm" in build_prompt(d) and "top surface of the legs" in build_prompt(d)


async def test_explanations_stream_into_the_page_are_cached_and_fall_back_on_timeout() -> None:
    pieces = ["Rep 1 was ", "deep enough: ", "the hip crease went below the knee by 2.4 cm."]
    fake = FakeClaude(pieces)
    slow = FakeClaude(["too late"], delay_s=3.0)
    try:
        explainer = Explainer(api_key="test-key", model="claude-test", base_url=fake.url, timeout_s=5)
        state = new_state(anonymous_viewer=True, explainer=explainer)
        q = state.hub.subscribe()
        first, again = synthetic_decisions([1.3]), synthetic_decisions([1.3], camera="left")
        state.on_decision(first[0])
        events: list[dict[str, Any]] = []
        while not any(e["type"] == "explanation" for e in events):
            events.append(await asyncio_wait(q.get(), 10))
        deltas = [e["text"] for e in events if e["type"] == "explanation_delta"]
        assert deltas == pieces
        final = next(e for e in events if e["type"] == "explanation")
        assert final["model"] == "claude-test" and final["text"] == "".join(pieces)
        req = fake.requests[0]
        assert req["path"] == "/v1/messages" and req["body"]["stream"] is True and req["key"] == "test-key"
        assert req["body"]["messages"][0]["content"] == prompt_for_attempt(first[0]["attempt"])
        # The same numbers from another camera: answered from the cache, no second request.
        state.on_decision(again[0])
        while True:
            e = await asyncio_wait(q.get(), 10)
            if e["type"] == "explanation":
                break
        assert e["text"] == "".join(pieces) and len(fake.requests) == 1
        assert state.store.attempt(again[0]["attempt_id"])["explanation"]["model"] == "claude-test"  # type: ignore[index]
        # The referee's template arriving later never replaces Claude's answer.
        state.on_explanation(
            {"attempt_id": first[0]["attempt_id"], "text": "t", "model": "template", "prompt_hash": "x"}
        )
        assert state.store.attempt(first[0]["attempt_id"])["explanation"]["model"] == "claude-test"  # type: ignore[index]

        timed = Explainer(api_key="test-key", model="claude-test", base_url=slow.url, timeout_s=1.0)
        started = time.monotonic()
        result = await timed.explain_attempt(first[0]["attempt"])
        assert result.model == "template" and time.monotonic() - started < 2.5
        assert result.text.startswith("Rep 1: at the bottom")
        no_key = await Explainer(api_key="", base_url=fake.url).explain_attempt(first[0]["attempt"])
        assert no_key.model == "template" and len(fake.requests) == 1
    finally:
        fake.close()
        slow.close()


async def asyncio_wait(aw: Any, timeout: float) -> Any:
    import asyncio

    return await asyncio.wait_for(aw, timeout)


def test_users_add_reads_the_password_from_stdin_and_login_link_works(db_target: str) -> None:
    dbfile = db_target  # the CLI takes a SQLite path or a PostgreSQL URL alike
    run = [sys.executable, "-m", "meetvar.cli", "users"]
    added = subprocess.run(
        [*run, "add", "--role", "organizer", "chief", "--db", str(dbfile)],
        input=f"{PASSWORD}\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    short = subprocess.run(
        [*run, "add", "--role", "jury", "j1", "--db", str(dbfile)],
        input="short\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert short.returncode != 0 and "at least 10" in short.stderr and "Traceback" not in short.stderr
    link = subprocess.run(
        [*run, "login-link", "chief", "--db", str(dbfile), "--url", "http://testserver"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    token = link.stdout.strip().split("#login=")[1]
    state = DashboardState(DashboardStore(dbfile))
    with TestClient(create_app(state)) as c:
        assert (
            c.post("/api/login", json={"name": "chief", "password": PASSWORD}, headers=OWN).status_code == 200
        )
        assert (
            TestClient(c.app).post("/api/login/token", json={"token": token}, headers=OWN).json()["name"]
            == "chief"
        )
    assert [e["action"] for e in state.audit.entries()][:2] == ["user_created", "login_link_issued"]
