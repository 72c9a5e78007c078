"""The dashboard's store on PostgreSQL: what only PostgreSQL can show.

The whole of tests/test_dashboard.py (routes, roles, sessions, the audit chain and its triggers,
appeals, fusion, history, reconnect, replays, explanations, the users CLI) runs on SQLite and on a
real PostgreSQL, through the ``databases`` fixture of tests/conftest.py. Here: that the PostgreSQL
cases really are on PostgreSQL through psycopg, and what differs from SQLite — many writers at once
on one audit chain (SQLite has one writer at a time; PostgreSQL must serialise appenders itself).
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

import pytest
from sqlalchemy import event, text

from dashboard.audit import AuditLog
from dashboard.store import DashboardStore
from tests.postgres import Databases


@pytest.fixture(scope="module")
def db_backend() -> str:
    """This module is PostgreSQL only (overrides the conftest fixture that runs both back ends)."""
    return "postgres"


@pytest.mark.integration
def test_the_store_really_is_on_postgres_through_psycopg(db_target: str) -> None:
    store = DashboardStore(db_target)
    assert store.engine.dialect.name == "postgresql" and store.engine.dialect.driver == "psycopg"
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT version()")).scalar_one().startswith("PostgreSQL")
        triggers = conn.execute(
            text("SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit'::regclass ORDER BY tgname")
        ).scalars()
        assert list(triggers) == ["audit_no_delete", "audit_no_update"]
    store.engine.dispose()


@pytest.mark.integration
def test_concurrent_appenders_never_fork_the_audit_chain(databases: Databases) -> None:
    url = databases.new()
    logs = [AuditLog(DashboardStore(url).engine) for _ in range(4)]  # four dashboards, one database
    errors: list[BaseException] = []

    def append(log: AuditLog, who: int) -> None:
        try:
            for i in range(15):
                log.append(f"user{who}", "jury", "appeal_decided", f"lift-{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(log, n)) for n, log in enumerate(logs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    verdict = logs[0].verify()
    assert verdict.ok and verdict.entries == 60, verdict
    entries = logs[0].entries()
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(entries))


@pytest.mark.integration
def test_a_reconnect_cursor_never_skips_an_event_still_being_committed(databases: Databases) -> None:
    """Two dashboards on one database: while the first's event insert is uncommitted, the second's
    must not become visible with a later seq (a page reading then would skip the first for good)."""
    url = databases.new()
    slow, fast = DashboardStore(url), DashboardStore(url)
    inserted, release = threading.Event(), threading.Event()

    @event.listens_for(slow.engine, "after_cursor_execute")
    def _hold_open(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("INSERT INTO events"):
            inserted.set()
            release.wait(20)  # the transaction stays open, its seq taken, until the test lets go

    first = threading.Thread(target=slow.append_event, args=({"type": "decision", "n": 1},))
    first.start()
    assert inserted.wait(10)
    second = threading.Thread(target=fast.append_event, args=({"type": "decision", "n": 2},))
    second.start()
    second.join(1.0)
    seen_meanwhile = fast.events_after(0, 10)
    release.set()
    first.join(10)
    second.join(10)
    assert seen_meanwhile == []  # without ordering: [n=2], and the page's cursor jumps over n=1
    assert [e["n"] for e in fast.events_after(0, 10)] == [1, 2]
    slow.engine.dispose()
    fast.engine.dispose()


@pytest.mark.integration
def test_dashboards_starting_together_on_one_new_database_all_start(databases: Databases) -> None:
    """Four dashboards opening one empty database at the same moment (a venue's restart): the schema,
    its append-only triggers and the audit head are made once, and none of them fails."""
    url = databases.new()
    barrier = threading.Barrier(4)
    stores: list[DashboardStore] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            barrier.wait(10)
            store = DashboardStore(url)
            AuditLog(store.engine)
            stores.append(store)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(stores) == 4
    log = AuditLog(stores[0].engine)
    log.append("alice", "organizer", "meet_added", "meet1")
    assert log.verify().ok and log.verify().entries == 1
    for store in stores:
        store.engine.dispose()
