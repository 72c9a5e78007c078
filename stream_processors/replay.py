"""Replay an archived meet into ``video.chunks``, as if its cameras were live again.

Every chunk goes out with its archived :class:`ChunkMeta` unchanged — same ``stream_start_us``, same
``seq``, same capture times — and the same bytes, so the pose worker sees the same pixels and the
referee makes the same calls with the same attempt ids (ids name the meet's attempt or the camera and
the bottom's capture time, never when a message arrived: :mod:`stream_processors.attempts`). That is
what makes a replay an audit: live and replayed decisions must be identical; and since the referee
remembers the attempts it emitted and decisions are idempotent per attempt id, replaying into the live
pipeline adds nothing.

Order and pace: all cameras interleaved by capture time — a chunk is due when its last frame was
captured (as it was live), each stream's end-of-stream marker right after its last chunk — paced at
``speed`` × real time, or as fast as the broker takes them (``speed`` 0).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import structlog
from aiokafka import AIOKafkaProducer

from ingest.pacing import paced
from stream_processors.archiver import LOG_DIR
from stream_processors.object_store import BrowsableObjectStore, ObjectStoreError
from stream_processors.schemas import ChunkMeta, SchemaError, pack_chunk
from stream_processors.topics import VIDEO_CHUNKS, camera_key

log = structlog.get_logger()

DEFAULT_INLINE_LIMIT = 900_000  # as ingest: larger chunks travel as a claim check


class NothingArchived(LookupError):
    """No chunk of the requested meet (or camera) is in the store."""


@dataclass(frozen=True, slots=True)
class ArchivedChunk:
    """One archived chunk (or end marker): its metadata and where its bytes are. ``pts_us`` is the
    capture-time list, so :func:`ingest.pacing.paced` releases it when its last frame was captured."""

    meta: ChunkMeta
    stem: str
    due_us: int  # capture time of the last frame; an end marker: its stream's last frame

    @property
    def pts_us(self) -> list[int]:
        return self.meta.capture_us

    @property
    def camera_key(self) -> str:
        return camera_key(self.meta.meet, self.meta.platform, self.meta.camera)


@dataclass
class ReplayStats:
    chunks: int = 0
    end_markers: int = 0
    bytes: int = 0
    by_reference: int = 0
    streams: int = 0
    skipped: int = 0
    elapsed_s: float = 0.0
    media_s: float = 0.0
    cameras: list[str] = field(default_factory=list)

    @property
    def speed(self) -> float:
        """How many seconds of video went out per second of wall time."""
        return self.media_s / self.elapsed_s if self.elapsed_s > 0 else 0.0


def load_meet(store: BrowsableObjectStore, meet: str, *, camera: str | None = None) -> list[ArchivedChunk]:
    """The archived chunks of ``meet`` (optionally one ``meet/platform/camera``), in replay order.

    Unreadable metadata is logged and left out (the archiver only writes valid metadata, so this is
    damage after the fact); :class:`NothingArchived` if nothing is left.
    """
    prefix = f"{camera}/" if camera else f"{meet}/"
    metas: list[tuple[str, ChunkMeta]] = []
    for key in store.list(prefix):
        if not key.endswith(".json") or f"/{LOG_DIR}/" in f"/{key}":
            continue
        try:
            meta = ChunkMeta.parse(store.get(store.ref(key)))
        except (SchemaError, ObjectStoreError) as exc:
            log.error("replay.bad_metadata", key=key, error=str(exc))
            continue
        metas.append((key.removesuffix(".json"), meta))
    if not metas:
        where = f"camera {camera}" if camera else f"meet {meet!r}"
        raise NothingArchived(f"no archived chunks of {where} in {store!r} — check --meet and --store")
    # An end marker is due with its stream's last frame (it carries no capture times of its own).
    last: dict[tuple[str, int], int] = {}
    for _, meta in metas:
        stream = (camera_key(meta.meet, meta.platform, meta.camera), meta.stream_start_us)
        if meta.capture_us:
            last[stream] = max(last.get(stream, 0), meta.capture_us[-1])
    items = []
    for stem, meta in metas:
        stream = (camera_key(meta.meet, meta.platform, meta.camera), meta.stream_start_us)
        due = meta.capture_us[-1] if meta.capture_us else last.get(stream, meta.stream_start_us)
        items.append(ArchivedChunk(meta, stem, due))
    # Capture order across cameras; within a stream seq breaks ties, so a marker follows its last chunk.
    items.sort(
        key=lambda c: (c.due_us, c.camera_key, c.meta.stream_start_us, c.meta.end_of_stream, c.meta.seq)
    )
    return items


async def replay_meet(
    producer: AIOKafkaProducer,
    store: BrowsableObjectStore,
    meet: str,
    *,
    speed: float = 1.0,
    camera: str | None = None,
    inline_limit: int = DEFAULT_INLINE_LIMIT,
) -> ReplayStats:
    """Publish an archived meet to ``video.chunks``; returns once the broker has acknowledged all of it.

    Chunks above ``inline_limit`` are sent as a claim check pointing at the archived ``.ts`` itself
    (consumers must then read from the archive store). A chunk whose bytes are gone is logged and
    skipped, like a camera gap; the rest of the meet still replays.
    """
    items = load_meet(store, meet, camera=camera)
    stats = ReplayStats(
        streams=len({(c.camera_key, c.meta.stream_start_us) for c in items}),
        cameras=sorted({c.camera_key for c in items}),
    )
    first_us = min((c.meta.capture_us[0] for c in items if c.meta.capture_us), default=0)
    last_us = max((c.due_us for c in items), default=0)
    stats.media_s = max(0.0, (last_us - first_us) / 1e6)
    log.info("replay.start", meet=meet, chunks=len(items), speed=speed, streams=stats.streams)
    started = time.perf_counter()
    reader = _ReadAhead(store, [c for c in items if not c.meta.end_of_stream], inline_limit)
    async for item in paced(items, speed=speed):
        meta = item.meta
        data = b""
        if not meta.end_of_stream:
            try:
                data = await reader.take(item)
            except ObjectStoreError as exc:
                log.error("replay.chunk_unreadable", stem=item.stem, error=str(exc))
                stats.skipped += 1
                continue
            if meta.size > inline_limit:
                meta = meta.model_copy(update={"ref": store.ref(f"{item.stem}.ts")})
                stats.by_reference += 1
            else:
                meta = meta.model_copy(update={"ref": None})
        await producer.send_and_wait(VIDEO_CHUNKS, pack_chunk(meta, data), key=item.camera_key.encode())
        if meta.end_of_stream:
            stats.end_markers += 1
        else:
            stats.chunks += 1
            stats.bytes += meta.size
    stats.elapsed_s = time.perf_counter() - started
    log.info("replay.done", meet=meet, speed_x=round(stats.speed, 1), **_public(stats))
    return stats


class _ReadAhead:
    """Reads the next chunk's bytes on a thread while the current one is paced and sent, so an S3 GET
    costs no replay time."""

    def __init__(self, store: BrowsableObjectStore, items: list[ArchivedChunk], inline_limit: int) -> None:
        self._store, self._items, self._limit = store, items, inline_limit
        self._next = 0
        self._task: asyncio.Future[bytes] | None = self._start(0)

    def _start(self, index: int) -> asyncio.Future[bytes] | None:
        if index >= len(self._items):
            return None
        return asyncio.ensure_future(
            asyncio.to_thread(_chunk_bytes, self._store, self._items[index], self._limit)
        )

    async def take(self, item: ArchivedChunk) -> bytes:
        """The bytes of ``item``, which must be the next chunk in order."""
        assert self._task is not None and self._items[self._next] is item, "chunks taken out of order"
        task = self._task
        self._next += 1
        self._task = self._start(self._next)
        return await task


def _chunk_bytes(store: BrowsableObjectStore, item: ArchivedChunk, inline_limit: int) -> bytes:
    """The archived bytes of a chunk, checked against its metadata; empty when sent by reference."""
    ref = store.ref(f"{item.stem}.ts")
    if item.meta.size > inline_limit:
        return b""
    data = store.get(ref)
    if len(data) != item.meta.size:
        raise ObjectStoreError(f"{ref} has {len(data)} bytes, its metadata says {item.meta.size}")
    return data


def _public(stats: ReplayStats) -> dict[str, object]:
    return {k: v for k, v in stats.__dict__.items() if k != "cameras"}
