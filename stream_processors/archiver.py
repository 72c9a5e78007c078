"""The archiver: every byte of a meet kept in the object store, laid out so it can be replayed and audited.

A consumer-group service. What it writes, per meet (``meet/`` is the prefix of everything of a meet,
so copying, retaining or deleting a meet is one prefix operation):

* ``meet/platform/camera/<stream_start_us>/<seq:08d>.ts`` — the chunk's bytes (standalone MPEG-TS),
  byte-identical to what travelled (inline, or fetched through its claim-check ref);
* ``meet/platform/camera/<stream_start_us>/<seq:08d>.json`` — its :class:`ChunkMeta`, exactly as it
  travelled. Written *after* the ``.ts``: a ``.json`` present means its bytes are present. End-of-stream
  markers have a ``.json`` and no ``.ts`` (replay must send them, or the referee never closes the stream);
* ``meet/_log/<topic>/<partition:04d>-<first_offset:012d>.jsonl`` — ``decisions``, ``explanations``,
  ``meet.state`` and ``audit`` as JSON lines, one segment per consumed batch, each line carrying its
  topic, partition, offset, timestamp, key and value: enough to rebuild the meet's record.
  :func:`read_log` merges the segments.

Why it is safe to crash or be redelivered at any point:

* Keys derive from the message, never from arrival order, so a redelivered chunk overwrites the same
  key with the same bytes. A log segment is named by the offset it starts at; a redelivered batch
  rewrites it (perhaps with fewer or more lines), and :func:`read_log` de-duplicates lines by
  ``(topic, partition, offset)``, so the union is exactly the topic, once.
* Offsets are committed only after the whole batch is written. If the store fails (down, full,
  credentials), the batch is *not* committed: the consumer seeks back and retries with back-off, so
  nothing is ever acknowledged that is not stored.
* Input that can never be archived as a chunk (corrupt framing, unknown schema, a key that would escape
  the layout, a claim-check ref that is gone or names a store the archiver was not given) is logged
  and kept verbatim under ``_quarantine/<topic>/<partition>-<offset>.bin`` — still every byte — and
  the stream goes on. One bad message never stalls the archive of every camera behind it.

Claim checks: a chunk above the inline limit travels as a ref. If the ref already *is* the archive's
object for that chunk (ingest and archive share the store, as in the demo, where ingest writes to the
same layout), nothing is copied — the bytes are already where the archive wants them. Otherwise the
bytes are fetched from the claim store and copied in, so the archive never depends on the ingest
store's retention.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from meetvar.metrics import ERRORS, RECORDS
from stream_processors.object_store import (
    BrowsableObjectStore,
    ForeignRef,
    ObjectMissing,
    ObjectStore,
    ObjectStoreError,
)
from stream_processors.schemas import ChunkMeta, SchemaError, unpack_chunk
from stream_processors.topics import AUDIT, DECISIONS, EXPLANATIONS, MEET_STATE, VIDEO_CHUNKS

log = structlog.get_logger()

LOG_TOPICS = (DECISIONS, EXPLANATIONS, MEET_STATE, AUDIT)
ARCHIVED_TOPICS = (VIDEO_CHUNKS, *LOG_TOPICS)
LOG_DIR = "_log"
QUARANTINE = "_quarantine"
DEFAULT_GROUP = "meetvar-archiver"


class Record(Protocol):
    """What the archiver reads of a Kafka record (aiokafka's ``ConsumerRecord`` has it)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


class Rejected(Exception):
    """A record that can never be archived in its proper place: quarantined, logged, skipped."""


def _segment(text: str, what: str, *, reserved: bool = False) -> str:
    """One path segment of the layout. Meets and platforms may not start with ``_``: that keeps
    ``_quarantine/`` and ``meet/_log/`` apart from any meet's or platform's video."""
    if not text or "/" in text or text in (".", "..") or (reserved and text.startswith("_")):
        raise Rejected(f"{what} {text!r} cannot be a path segment of the archive layout")
    return text


def chunk_stem(meta: ChunkMeta) -> str:
    """``meet/platform/camera/<stream_start_us>/<seq:08d>``: where a chunk lives, from the message alone."""
    parts = (
        _segment(meta.meet, "meet", reserved=True),
        _segment(meta.platform, "platform", reserved=True),
        _segment(meta.camera, "camera"),
    )
    return f"{'/'.join(parts)}/{meta.stream_start_us}/{meta.seq:08d}"


def log_segment_key(meet: str, topic: str, partition: int, first_offset: int) -> str:
    return f"{meet}/{LOG_DIR}/{topic}/{partition:04d}-{first_offset:012d}.jsonl"


@dataclass
class ArchiveStats:
    chunks: int = 0
    chunk_bytes: int = 0
    copied_from_claims: int = 0
    referenced: int = 0
    end_markers: int = 0
    log_lines: int = 0
    quarantined: int = 0
    write_s: float = 0.0
    by_topic: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "by_topic"}
        out["by_topic"] = dict(self.by_topic)
        return out


class Archiver:
    """Writes consumed records to the store. Synchronous and thread-safe per record; the service runs it
    on worker threads so the event loop keeps heartbeating while the store is slow."""

    def __init__(
        self,
        archive: BrowsableObjectStore,
        claims: ObjectStore | None = None,
        *,
        write_threads: int = 4,
    ) -> None:
        self.archive = archive
        self.claims = claims if claims is not None else archive
        self.stats = ArchiveStats()
        self._lock = threading.Lock()
        # S3 PUTs are latency-bound: a few in flight multiply throughput; a folder barely notices.
        self._pool = ThreadPoolExecutor(max(1, write_threads), thread_name_prefix="archive-write")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    # -- one batch -----------------------------------------------------------------------------

    def write_batch(self, records: Sequence[Record]) -> None:
        """Archive a batch; returns once *all* of it is stored (then the caller may commit).

        Raises :class:`ObjectStoreError` when the archive itself cannot be written: the caller must not
        commit, and retries the batch.
        """
        started = time.perf_counter()
        chunks = [r for r in records if r.topic == VIDEO_CHUNKS]
        logs = [r for r in records if r.topic != VIDEO_CHUNKS]
        futures = [self._pool.submit(self._archive_chunk, r) for r in chunks]
        if logs:
            futures += [self._pool.submit(self._write_log, *job) for job in self._log_jobs(logs)]
        errors = [exc for f in futures if (exc := f.exception()) is not None]
        self.stats.write_s += time.perf_counter() - started
        if errors:
            raise errors[0]

    # -- video.chunks --------------------------------------------------------------------------

    def _archive_chunk(self, record: Record) -> None:
        try:
            meta, data = unpack_chunk(record.value or b"")
            stem = chunk_stem(meta)
            size = 0 if meta.end_of_stream else self._store_chunk_bytes(meta, data, f"{stem}.ts")
        except (SchemaError, Rejected) as exc:
            self._quarantine(record, str(exc))
            return
        # The metadata last: a .json in the archive promises that its .ts is there too.
        self.archive.put(f"{stem}.json", meta.dump())
        with self._lock:
            if meta.end_of_stream:
                self.stats.end_markers += 1
            else:
                self.stats.chunks += 1
                self.stats.chunk_bytes += size
            self.stats.by_topic[record.topic] += 1

    def _store_chunk_bytes(self, meta: ChunkMeta, data: bytes, key: str) -> int:
        """Make sure the chunk's bytes are at ``key`` (written, copied, or found there); their length."""
        if meta.ref is None:
            self.archive.put(key, data)
            return len(data)
        if meta.ref == self.archive.ref(key):
            # Ingest wrote the claim check straight into the archive layout: nothing to copy.
            with self._lock:
                self.stats.referenced += 1
            return meta.size
        try:
            data = self.claims.get(meta.ref)
        except ObjectMissing as exc:
            raise Rejected(f"claim-check object gone: {exc}") from exc
        except ForeignRef as exc:
            # Never readable here (and never read from arbitrary places a message names): keep the
            # message, whose ref still finds the bytes, and say how to configure the archiver.
            raise Rejected(f"{exc}; start the archiver with --claims set to the ingest's store") from exc
        # Any other store error propagates: the batch is retried, the chunk is not given up.
        if len(data) != meta.size:
            raise Rejected(f"claim-check object {meta.ref} has {len(data)} bytes, metadata says {meta.size}")
        self.archive.put(key, data)
        with self._lock:
            self.stats.copied_from_claims += 1
        return len(data)

    # -- decisions, explanations, meet.state, audit --------------------------------------------

    def _log_jobs(self, records: Iterable[Record]) -> list[tuple[str, str, int, int, list[str]]]:
        """Group log records into one segment per (meet, topic, partition) of this batch."""
        groups: dict[tuple[str, str, int], list[tuple[int, str]]] = defaultdict(list)
        for record in records:
            try:
                meet, line = self._log_line(record)
            except Rejected as exc:
                self._quarantine(record, str(exc))
                continue
            groups[(meet, record.topic, record.partition)].append((record.offset, line))
        return [
            (meet, topic, partition, lines[0][0], [text for _, text in lines])
            for (meet, topic, partition), lines in groups.items()
        ]

    @staticmethod
    def _log_line(record: Record) -> tuple[str, str]:
        key = (record.key or b"").decode(errors="replace")
        try:
            value = json.loads(record.value or b"")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise Rejected(f"{record.topic} value is not JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise Rejected(f"{record.topic} value is not a JSON object")
        # Every topic's key starts with the meet (meet/platform, attempt id, meet); prefer the value's own.
        meet = value.get("meet") if isinstance(value.get("meet"), str) else key.split("/", 1)[0]
        meet = _segment(str(meet or ""), "meet", reserved=True)
        line = {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "timestamp_ms": record.timestamp,
            "key": key,
            "value": value,
        }
        return meet, json.dumps(line, separators=(",", ":"), sort_keys=True)

    def _write_log(self, meet: str, topic: str, partition: int, first_offset: int, lines: list[str]) -> None:
        body = ("\n".join(lines) + "\n").encode()
        self.archive.put(log_segment_key(meet, topic, partition, first_offset), body)
        with self._lock:
            self.stats.log_lines += len(lines)
            self.stats.by_topic[topic] += len(lines)

    # -- bad input -----------------------------------------------------------------------------

    def _quarantine(self, record: Record, reason: str) -> None:
        log.error(
            "archiver.record_quarantined",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            error=reason,
        )
        key = f"{QUARANTINE}/{record.topic}/{record.partition:04d}-{record.offset:012d}.bin"
        self.archive.put(key, record.value or b"")
        ERRORS.labels(service="archiver", kind="quarantined").inc()
        with self._lock:
            self.stats.quarantined += 1


def read_log(store: BrowsableObjectStore, meet: str, topic: str) -> list[dict[str, Any]]:
    """A meet's archived records of one log topic, each once, in (partition, offset) order."""
    seen: dict[tuple[int, int], dict[str, Any]] = {}
    for key in store.list(f"{meet}/{LOG_DIR}/{topic}/"):
        if not key.endswith(".jsonl"):
            continue
        for line in store.get(store.ref(key)).decode().splitlines():
            if line.strip():
                entry = json.loads(line)
                seen[(entry["partition"], entry["offset"])] = entry
    return [seen[k] for k in sorted(seen)]


async def run_archiver(
    consumer: AIOKafkaConsumer,
    archiver: Archiver,
    *,
    max_records: int = 200,
    retry_s: tuple[float, float] = (0.5, 10.0),
    report_every_s: float = 30.0,
) -> None:
    """Consume, write, commit — forever. A failed write seeks back and retries the batch with back-off."""
    loop = asyncio.get_running_loop()
    backoff = retry_s[0]
    last_report = time.monotonic()
    while True:
        batches = await consumer.getmany(timeout_ms=500, max_records=max_records)
        records = [r for part in batches.values() for r in part]
        if not records:
            continue
        try:
            await loop.run_in_executor(None, archiver.write_batch, records)
        except ObjectStoreError as exc:
            log.error("archiver.store_unavailable", error=str(exc), retry_in_s=backoff, records=len(records))
            ERRORS.labels(service="archiver", kind="store_unavailable").inc()
            for tp, part in batches.items():
                if part:
                    consumer.seek(TopicPartition(tp.topic, tp.partition), part[0].offset)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, retry_s[1])
            continue
        backoff = retry_s[0]
        await consumer.commit()
        for record in records:
            RECORDS.labels(topic=record.topic).inc()
        if time.monotonic() - last_report > report_every_s:
            last_report = time.monotonic()
            log.info("archiver.progress", **archiver.stats.as_dict())
