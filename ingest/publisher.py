"""Publishes one camera's chunks to ``video.chunks``: inline below the size limit, by reference above.

The broker here enforces no message size, so the limit is ours: a chunk larger than ``inline_limit``
goes to the object store and only its reference travels (claim check). Sends are awaited one by one on
an idempotent producer, so a chunk is never silently dropped: judging never loses frames.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer

from ingest.normalize import chunks_from_file
from ingest.pacing import paced
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


async def publish_file(
    producer: AIOKafkaProducer,
    path: Path,
    camera: CameraId,
    store: ObjectStore,
    *,
    speed: float = 1.0,
    inline_limit: int = DEFAULT_INLINE_LIMIT,
    start_us: int | None = None,
) -> StreamStats:
    """Stream one pass of a file as a camera, paced at ``speed`` × real time (0 = as fast as possible)."""
    start = start_us if start_us is not None else time.time_ns() // 1000
    stats = StreamStats()
    key = camera.key.encode()
    base: dict[str, Any] = {
        "meet": camera.meet,
        "platform": camera.platform,
        "camera": camera.camera,
        "stream_start_us": start,
    }
    frame_index = 0
    async for chunk in paced(chunks_from_file(path, start_us=start), speed=speed):
        data = chunk.data
        ref = None
        if len(data) > inline_limit:
            ref = store.put(f"{camera.key}/{start}/{chunk.seq:08d}.ts", data)
            data = b""
            stats.by_reference += 1
        meta = ChunkMeta(
            **base,
            seq=chunk.seq,
            first_frame_index=frame_index,
            capture_us=list(chunk.capture_us),
            pts_us=list(chunk.pts_us),
            codec=chunk.codec,
            container=chunk.container,
            width=chunk.width,
            height=chunk.height,
            size=len(chunk.data),
            ref=ref,
        )
        await producer.send_and_wait(VIDEO_CHUNKS, pack_chunk(meta, data), key=key)
        frame_index += chunk.frame_count
        stats.chunks += 1
        stats.frames += chunk.frame_count
        stats.bytes += len(chunk.data)
    eos = ChunkMeta(**base, seq=stats.chunks, first_frame_index=frame_index, end_of_stream=True)
    await producer.send_and_wait(VIDEO_CHUNKS, pack_chunk(eos, b""), key=key)
    log.info("ingest.stream_done", camera=camera.key, **stats.__dict__)
    return stats
