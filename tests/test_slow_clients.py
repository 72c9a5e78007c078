"""Issue 11, item 6: a WebSocket client that falls behind is closed with code 4008 ("too slow") instead of
silently losing events, and reconnecting with ``?since=N`` gives it exactly the events it missed.
Against the real app under uvicorn, with a real WebSocket client."""

from __future__ import annotations

import time
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from dashboard.auth import Auth
from dashboard.hub import SLOW_CLIENT_CLOSE, Hub
from dashboard.state import DashboardState
from dashboard.store import DashboardStore
from tests.browser import LiveServer, synthetic_decisions, with_verdict

CONN = "return document.getElementById('conn').textContent"


def _state(queue_size: int) -> DashboardState:
    store = DashboardStore(":memory:")
    state = DashboardState(store, auth=Auth(store.engine, anonymous_viewer=True))
    state.hub = Hub(queue_size=queue_size)
    return state


def _decisions(n: int) -> list[dict[str, Any]]:
    base = synthetic_decisions([1.3])[0]
    return [with_verdict(base, "good", camera=f"cam{i}") for i in range(n)]


def _publish_all(state: DashboardState, msgs: list[dict[str, Any]]) -> None:
    for msg in msgs:  # one burst on the server's loop: far more than a 4-event queue holds
        state.on_decision(msg)


def _read_until_closed(ws: Any, limit: int = 10_000) -> tuple[list[dict[str, Any]], int | None]:
    import json

    got: list[dict[str, Any]] = []
    try:
        for _ in range(limit):
            got.append(json.loads(ws.recv(timeout=10)))
    except ConnectionClosed as exc:
        return got, exc.rcvd.code if exc.rcvd is not None else None
    raise AssertionError("the server never closed the slow client")


@pytest.mark.integration
def test_a_slow_client_is_closed_with_4008_and_catches_up_with_since() -> None:
    import json

    state = _state(queue_size=4)
    msgs = _decisions(12)
    with LiveServer(state) as server:
        url = server.url.replace("http://", "ws://") + "/ws"
        with connect(url, origin=server.url, open_timeout=10) as ws:  # type: ignore[arg-type]
            snapshot = json.loads(ws.recv(timeout=10))
            assert snapshot["type"] == "snapshot"
            cursor = snapshot["cursor"]
            # This client reads nothing while 12 decisions (24 stored events) are pushed at once.
            server.call(_publish_all, state, msgs)
            got, code = _read_until_closed(ws)
        assert code == SLOW_CLIENT_CLOSE
        assert len(got) < 24, "the client was not behind at all"
        seqs = [e["seq"] for e in got if "seq" in e]
        last = seqs[-1] if seqs else cursor
        head = state.store.last_seq()
        assert head - cursor == 24
        # The page's reconnect: ?since=<last seq it saw> replays exactly the rest, then caught_up.
        with connect(f"{url}?since={last}", origin=server.url, open_timeout=10) as ws:  # type: ignore[arg-type]
            missed: list[dict[str, Any]] = []
            while True:
                event = json.loads(ws.recv(timeout=10))
                if event["type"] == "caught_up":
                    break
                missed.append(event)
            assert event["cursor"] == head and event["replayed"] == len(missed)
            # Still live after catching up: a new event arrives normally.
            server.call(_publish_all, state, _decisions(1))
            assert json.loads(ws.recv(timeout=10))["type"] == "decision"
        all_seqs = seqs + [e["seq"] for e in missed]
        assert all_seqs == list(range(cursor + 1, head + 1)), "events lost or doubled across the reconnect"
        decided = {e["attempt_id"] for e in got + missed if e["type"] == "decision"}
        assert decided == {m["attempt_id"] for m in msgs}
        deadline = time.monotonic() + 10  # the server notices the closed sockets on its own loop
        while state.hub.client_count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert state.hub.client_count == 0


@pytest.mark.integration
def test_a_client_that_keeps_up_is_not_closed() -> None:
    import json

    state = _state(queue_size=64)
    with LiveServer(state) as server:
        url = server.url.replace("http://", "ws://") + "/ws"
        with connect(url, origin=server.url, open_timeout=10) as ws:  # type: ignore[arg-type]
            assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"
            for msg in _decisions(5):
                server.call(_publish_all, state, [msg])
                assert json.loads(ws.recv(timeout=10))["type"] == "decision"
                assert json.loads(ws.recv(timeout=10))["type"] == "lift"


@pytest.mark.integration
def test_the_page_says_reconnecting_then_catches_up_after_being_closed_as_too_slow(tmp_path: Any) -> None:
    """In Chromium: a burst overflows the page's queue, the server closes it with 4008, the page shows
    "reconnecting…", reconnects with ?since=N and ends "live" with every lift and the server's cursor."""
    from argon2 import PasswordHasher

    from tests.browser import chromium, login, wait_for

    store = DashboardStore(":memory:")
    hasher = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
    state = DashboardState(store, auth=Auth(store.engine, hasher=hasher))
    state.hub = Hub(queue_size=4)
    state.auth.create_user("viewer", "viewer", "a-long-test-password")
    msgs = _decisions(12)
    driver = chromium(tmp_path / "profile")
    try:
        with LiveServer(state) as server:
            login(driver, server.url, "viewer", "a-long-test-password")
            wait_for(driver, lambda d: d.execute_script(CONN) == "live")
            driver.execute_script(
                "window.connLog = [];"
                "new MutationObserver(() => window.connLog.push(document.getElementById('conn').textContent))"
                ".observe(document.getElementById('conn'), "
                "{childList: true, characterData: true, subtree: true});"
            )
            server.call(_publish_all, state, msgs)
            head = state.store.last_seq()
            wait_for(driver, lambda d: d.execute_script("return window.meetvar.cursor") == head, timeout=20)
            wait_for(driver, lambda d: d.execute_script(CONN) == "live")
            log = driver.execute_script("return window.connLog")
            assert "reconnecting…" in log, log
            # The 12 calls are 12 cameras of one lift (the dashboard fuses cameras per lift): all there.
            cams = "return [...window.meetvar.lifts.values()].map((l) => l.cameras.length)"
            assert driver.execute_script(cams) == [len(msgs)]
    finally:
        driver.quit()
