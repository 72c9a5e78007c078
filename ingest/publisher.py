"""Publishes one camera's chunks to ``video.chunks``: inline below the size limit, by reference above.

The broker here enforces no message size, so the limit is ours: a chunk larger than ``inline_limit``
goes to the object store and only its reference travels (claim check). Sends are awaited one by one on
an idempotent producer, so a chunk is never silently dropped: judging never loses frames.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer

from ingest.chunker import Chunk
from ingest.normalize import chunks_from_file
from ingest.pacing import paced
from meetvar.metrics import FRAMES
from stream_processors.object_store import ObjectStore
from stream_processors.schemas import ChunkMeta, pack_chunk
from stream_processors.topics import VIDEO_CHUNKS, camera_key

log = structlog.get_logger()

DEFAULT_INLINE_LIMIT = 900_000  # bytes; under Kafka's default 1 MB message limit with headroom


@dataclass(frozen=True, slots=True)
class CameraId:
    meet: str
    platform: str
    camera: str

    @property
    def key(self) -> str:
        return camera_key(self.meet, self.platform, self.camera)

    @classmethod
    def parse(cls, text: str) -> CameraId:
        parts = text.split("/")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"camera id {text!r} must look like meet/platform/camera")
        return cls(*parts)


@dataclass
class StreamStats:
    chunks: int = 0
    frames: int = 0
    bytes: int = 0
    by_reference: int = 0


class ChunkSink:
    """One stream of one camera into ``video.chunks``: the single place that turns chunks into messages.

    Files, pull sources and WHIP sessions all publish through it, so the message format, the claim
    check and the end-of-stream marker cannot drift apart between them. ``start_us`` identifies the
    stream (``stream_start_us``): a reconnecting camera starts a new sink, and so a new stream.
    """

    def __init__(
        self,
        producer: AIOKafkaProducer,
        camera: CameraId,
        store: ObjectStore,
        *,
        start_us: int,
        inline_limit: int = DEFAULT_INLINE_LIMIT,
    ) -> None:
        self.producer = producer
        self.camera = camera
        self.store = store
        self.start_us = start_us
        self.inline_limit = inline_limit
        self.stats = StreamStats()
        self.ended = False
        self._key = camera.key.encode()
        self._base: dict[str, Any] = {
            "meet": camera.meet,
            "platform": camera.platform,
            "camera": camera.camera,
            "stream_start_us": start_us,
        }

    async def send(self, chunk: Chunk) -> ChunkMeta:
        """Produce one chunk and wait for the broker's ack: a returned chunk is stored, never lost."""
        if self.ended:
            raise RuntimeError(f"stream {self.camera.key}@{self.start_us} has ended; start a new ChunkSink")
        data = chunk.data
        ref = None
        if len(data) > self.inline_limit:
            # On a worker thread: an S3 PUT across the venue network must not stall the event loop.
            key = f"{self.camera.key}/{self.start_us}/{chunk.seq:08d}.ts"
            ref = await asyncio.to_thread(self.store.put, key, data)
            data = b""
            self.stats.by_reference += 1
        meta = ChunkMeta(
            **self._base,
            seq=self.stats.chunks,
            first_frame_index=self.stats.frames,
            capture_us=list(chunk.capture_us),
            pts_us=list(chunk.pts_us),
            codec=chunk.codec,
            container=chunk.container,
            width=chunk.width,
            height=chunk.height,
            size=len(chunk.data),
            ref=ref,
        )
        await self.producer.send_and_wait(VIDEO_CHUNKS, pack_chunk(meta, data), key=self._key)
        self.stats.chunks += 1
        self.stats.frames += chunk.frame_count
        self.stats.bytes += len(chunk.data)
        FRAMES.labels(camera=self.camera.key, stage="ingest").inc(chunk.frame_count)
        return meta

    async def end(self) -> None:
        """The end-of-stream marker, so consumers close the stream now instead of timing out on it."""
        if self.ended:
            return
        eos = ChunkMeta(
            **self._base, seq=self.stats.chunks, first_frame_index=self.stats.frames, end_of_stream=True
        )
        await self.producer.send_and_wait(VIDEO_CHUNKS, pack_chunk(eos, b""), key=self._key)
        self.ended = True


async def publish_file(
    producer: AIOKafkaProducer,
    path: Path,
    camera: CameraId,
    store: ObjectStore,
    *,
    speed: float = 1.0,
    inline_limit: int = DEFAULT_INLINE_LIMIT,
    start_us: int | None = None,
    resume: ChunkMeta | None = None,
) -> StreamStats:
    """Stream one pass of a file as a camera, paced at ``speed`` × real time (0 = as fast as possible).

    ``resume``: the last chunk the broker has of an unfinished pass of this file (see
    :mod:`ingest.resume`); the pass goes on after it, under its stream start, sending no chunk twice.
    """
    # The stream's start on both clocks: frames are stamped on the wall clock, released on the other.
    now_us, now = time.time_ns() // 1000, time.monotonic()
    if resume is not None:
        start_us = resume.stream_start_us
    start = start_us if start_us is not None else now_us
    sink = ChunkSink(producer, camera, store, start_us=start, inline_limit=inline_limit)
    chunks = chunks_from_file(path, start_us=start)
    if resume is not None:
        chunks = _after(chunks, resume)
        sink.stats.chunks = resume.seq + 1
        sink.stats.frames = resume.first_frame_index + len(resume.capture_us)
    # Anchored at the start only when the start is now: a resumed pass, or a start the caller chose,
    # is paced from its first chunk (a start far in the past would release everything at once).
    start_at = now if start_us is None and resume is None else None
    async for chunk in paced(chunks, speed=speed, start_at=start_at):
        await sink.send(chunk)
    await sink.end()
    log.info("ingest.stream_done", camera=camera.key, **sink.stats.__dict__)
    return sink.stats


class ResumeMismatch(ValueError):
    """The file's chunks do not continue the stream the broker has (another file, another chunking)."""


def _after(chunks: Iterator[Chunk], last: ChunkMeta) -> Iterator[Chunk]:
    """The chunks after ``last``, once the file's chunk of the same ``seq`` is proved to be it."""
    for chunk in chunks:
        if chunk.seq < last.seq:
            continue
        if chunk.seq == last.seq:
            if list(chunk.capture_us) != list(last.capture_us):
                raise ResumeMismatch(
                    f"chunk {last.seq} of this file does not match the stream {last.stream_start_us}"
                    " on the broker: not resuming it"
                )
            continue
        yield chunk
