"""The supervisor heals: a child killed -9 comes back (with backoff, counted, in the status file), a
one-shot child that finishes is left alone, a stop stops everything, and no child outlives a supervisor
killed -9 — in a unit with dummy children and in `meetvar demo` itself (durable broker included). And the
durable broker: records produced to Tansu on SeaweedFS survive a kill -9 of the broker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from meetvar.supervisor import Service, Supervisor, read_status
from stream_processors.kafka import ensure_topics, make_consumer, make_producer
from stream_processors.seaweed import SeaweedS3
from stream_processors.tansu import TansuBroker, free_port

SLEEPER = [sys.executable, "-c", "import time\nwhile True: time.sleep(1)"]
# Ignores SIGTERM: only the SIGKILL after its grace (or the parent-death signal) ends it.
STUBBORN = [
    sys.executable,
    "-c",
    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True: time.sleep(1)",
]


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_for(what: str, check: Callable[[], Any], timeout: float, step: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        if result := check():
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def polled(sup: Supervisor, check: Callable[[], Any]) -> Callable[[], Any]:
    """``check`` after one supervision pass (the unit test drives the supervisor itself)."""

    def run() -> Any:
        sup.poll()
        return check()

    return run


def state_of(status: Path, name: str) -> str | None:
    s = read_status(status)
    return s["services"][name]["state"] if s else None


def test_killed_child_is_restarted_with_backoff_and_counted(tmp_path: Path) -> None:
    status = tmp_path / "supervisor.json"
    exits: list[tuple[str, int]] = []
    sup = Supervisor(
        tmp_path / "logs",
        status,
        backoff_initial=0.2,
        backoff_max=5,
        on_exit=lambda name, code, tail: exits.append((name, code)),
    )
    sup.start(Service("a", SLEEPER))
    sup.start(Service("b", STUBBORN, stop_grace=0.5))
    sup.start(Service("once", [sys.executable, "-c", "pass"], restart="on-failure"))
    sup.start(Service("flaky", [sys.executable, "-c", "raise SystemExit(3)"], restart="on-failure"))
    # Exit 2 is final for this one (as for a feed whose password was refused): left failed, not retried.
    refused = [sys.executable, "-c", "import time; time.sleep(0.2); raise SystemExit(2)"]
    sup.start(Service("refused", refused, final_codes=frozenset({2})))
    try:
        a1, b1 = sup.pid("a"), sup.pid("b")
        assert a1 and b1
        os.kill(a1, signal.SIGKILL)

        def restarted() -> bool:
            return sup.restarts("a") == 1 and sup.pid("a") != a1 and sup.restarts("flaky") >= 2

        started = time.monotonic()
        wait_for("a restarted", polled(sup, restarted), timeout=10, step=0.02)
        assert time.monotonic() - started >= 0.15  # not at once: after the first backoff step
        a2 = sup.pid("a")
        assert a2 and alive(a2) and not alive(a1)
        assert sup.pid("b") == b1 and sup.restarts("b") == 0  # the other child was left alone
        assert ("a", -signal.SIGKILL) in exits

        # A crash right after a restart waits longer: the backoff doubles while the streak lasts.
        os.kill(a2, signal.SIGKILL)
        wait_for("a noticed", polled(sup, lambda: state_of(status, "a") == "backoff"), 5, step=0.02)
        t0 = time.monotonic()
        wait_for("a restarted again", polled(sup, lambda: sup.restarts("a") == 2), 10, step=0.02)
        assert time.monotonic() - t0 >= 0.3  # 0.4 s (second step), minus polling slack

        # What the organizer's page reads: state, restarts and the last exit, per service.
        services = read_status(status)["services"]  # type: ignore[index]
        assert services["a"]["state"] == "running" and services["a"]["restarts"] == 2
        assert services["a"]["last_exit"] == -signal.SIGKILL
        assert services["b"]["restarts"] == 0
        assert services["once"]["state"] == "done" and services["once"]["restarts"] == 0  # exit 0: done
        assert services["flaky"]["restarts"] >= 2 and services["flaky"]["last_exit"] == 3  # exit 3: again
        assert services["refused"]["state"] == "failed" and services["refused"]["restarts"] == 0
        assert services["refused"]["last_exit"] == 2 and ("refused", 2) in exits
    finally:
        pids = [p for p in (sup.pid("a"), sup.pid("b")) if p]
        sup.stop_all()
    assert not any(alive(p) for p in pids)  # the SIGTERM-ignoring one too (SIGKILL after its grace)
    assert {s["state"] for s in read_status(status)["services"].values()} == {"stopped"}  # type: ignore[index]


SUPERVISOR_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from meetvar.supervisor import Service, Supervisor

    sup = Supervisor(Path(sys.argv[1]), Path(sys.argv[1]) / "status.json")
    sup.start(Service("a", {sleeper!r}))
    sup.start(Service("b", {stubborn!r}))
    sup.run()
    """
)


def test_children_die_with_a_supervisor_killed_9(tmp_path: Path) -> None:
    script = SUPERVISOR_SCRIPT.format(sleeper=SLEEPER, stubborn=STUBBORN)
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)])
    try:
        status = wait_for(
            "both children",
            lambda: (s := read_status(tmp_path / "status.json")) and len(s["services"]) == 2 and s,
            timeout=20,
        )
        pids = [status["services"][n]["pid"] for n in ("a", "b")]
        assert all(alive(p) for p in pids)
    finally:
        proc.kill()
        proc.wait()
    wait_for("children gone", lambda: not any(alive(p) for p in pids), timeout=5)


# --- the demo itself ------------------------------------------------------------------------------


@pytest.mark.integration
def test_demo_heals_a_killed_service_and_dies_whole_when_killed_9(tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "demo.out").open("wb")
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "meetvar.cli",
            "demo",
            "--once",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    status_path = tmp_path / "supervisor.json"
    expected = {"s3", "broker", "dashboard", "pose", "referee", "archiver", "ingest"}
    pids: list[int] = []
    try:

        def all_running() -> dict[str, Any] | None:
            assert demo.poll() is None, (tmp_path / "demo.out").read_text()
            s = read_status(status_path)
            if s and set(s["services"]) == expected and all(v["pid"] for v in s["services"].values()):
                return s
            return None

        status = wait_for("every service started", all_running, timeout=40, step=0.2)
        pids = [v["pid"] for v in status["services"].values()]
        archiver = status["services"]["archiver"]["pid"]
        os.kill(archiver, signal.SIGKILL)

        def health() -> dict[str, Any] | None:
            assert demo.poll() is None, (tmp_path / "demo.out").read_text()
            with contextlib.suppress(httpx.HTTPError):
                body: dict[str, Any] = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).json()
                if (body.get("services") or {}).get("archiver", {}).get("restarts") == 1:
                    return body
            return None

        body = wait_for("the archiver restarted, seen on /api/health", health, timeout=30, step=0.3)
        assert body["services"]["archiver"]["last_exit"] == -signal.SIGKILL
        assert all(s["restarts"] == 0 for n, s in body["services"].items() if n != "archiver")
        new = read_status(status_path)["services"]["archiver"]["pid"]  # type: ignore[index]
        assert new != archiver and alive(new)
        pids.append(new)
        assert (
            "the archiver service stopped (killed by signal 9); restarting it"
            in (tmp_path / "demo.out").read_text()
        )
    finally:
        demo.kill()  # -9: no cleanup of its own
        demo.wait()
        log.close()
    wait_for(
        "no child of the demo left (broker and S3 store included)",
        lambda: not [p for p in pids if alive(p)],
        timeout=10,
    )


# --- the durable broker ---------------------------------------------------------------------------


@pytest.mark.integration
def test_tansu_on_seaweed_loses_nothing_when_killed_9(tmp_path: Path, seaweed: SeaweedS3) -> None:
    bucket = f"tansu-{uuid.uuid4().hex[:8]}"
    seaweed.ensure_bucket(bucket)
    port = free_port()
    topic = f"durable-{uuid.uuid4().hex[:8]}"
    sent = [(f"k{i}".encode(), f"record {i}".encode()) for i in range(20)]

    def broker() -> TansuBroker:
        return TansuBroker(tmp_path, port, storage=f"s3://{bucket}/", env=seaweed.tansu_env)

    async def produce(bootstrap: str) -> None:
        await ensure_topics(bootstrap, [topic], partitions=1)
        producer = make_producer(bootstrap)
        await producer.start()
        try:
            for key, value in sent:
                await producer.send_and_wait(topic, value, key=key)
        finally:
            await producer.stop()

    async def consume(bootstrap: str) -> list[tuple[bytes, bytes]]:
        consumer = make_consumer(bootstrap, None, topic, auto_offset_reset="earliest")
        await consumer.start()
        got: list[tuple[bytes, bytes]] = []
        try:
            deadline = time.monotonic() + 20
            while len(got) < len(sent) and time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=300)).values():
                    got += [(r.key, r.value) for r in records]
        finally:
            await consumer.stop()
        return got

    first = broker().start()
    try:
        asyncio.run(produce(first.bootstrap))
        assert first.pid
        os.kill(first.pid, signal.SIGKILL)  # no flush, no goodbye
        wait_for("the broker gone", lambda: first._proc is None or first._proc.poll() is not None, 5)
    finally:
        first.stop(grace=1)
    with broker() as second:
        assert asyncio.run(consume(second.bootstrap)) == sent
    assert seaweed.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0) > 0  # it really was on S3
