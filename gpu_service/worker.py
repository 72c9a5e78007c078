"""The pose worker: ``video.chunks`` in, one ``poses`` message per frame out.

A consumer-group member, so more workers share the cameras. Each camera stream keeps its own tracker
(the detector runs only when the track is lost). Offsets are committed after a chunk's poses are sent:
a worker killed mid-chunk makes its successor redo that chunk, and the referee drops the repeated
frames by capture time, so nothing is lost and nothing is counted twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from gpu_service.blazepose import BlazePoseTracker
from ingest.chunk_decoder import decode_chunk
from ingest.errors import ChunkDecodeError
from referee.keypoints import PoseFrame
from stream_processors.object_store import ObjectStore, ObjectStoreError
from stream_processors.schemas import ChunkMeta, PoseMsg, SchemaError, unpack_chunk
from stream_processors.topics import POSES

log = structlog.get_logger()
TrackerFactory = Callable[[], BlazePoseTracker]


class PoseWorker:
    def __init__(self, store: ObjectStore, tracker_factory: TrackerFactory) -> None:
        self._store = store
        self._factory = tracker_factory
        self._trackers: dict[tuple[str, int], BlazePoseTracker] = {}

    def poses_for_chunk(self, key: str, meta: ChunkMeta, data: bytes) -> list[PoseMsg]:
        """CPU-bound: decode the chunk and run pose on each frame. Raises on unreadable input."""
        base: dict[str, Any] = {
            "meet": meta.meet,
            "platform": meta.platform,
            "camera": meta.camera,
            "stream_start_us": meta.stream_start_us,
            "seq": meta.seq,
        }
        stream = (key, meta.stream_start_us)
        if meta.end_of_stream:
            self._trackers.pop(stream, None)
            return [PoseMsg(**base, end_of_stream=True)]
        if stream not in self._trackers:
            # A new stream of this camera (a restart or the next loop): forget the old track.
            for old in [s for s in self._trackers if s[0] == key]:
                del self._trackers[old]
            self._trackers[stream] = self._factory()
        tracker = self._trackers[stream]
        if meta.ref is not None:
            data = self._store.get(meta.ref)
        frames: list[npt.NDArray[np.uint8]] = decode_chunk(data, len(meta.capture_us))
        out = []
        for i, (rgb, capture_us) in enumerate(zip(frames, meta.capture_us, strict=False)):
            t0 = time.perf_counter()
            pose: PoseFrame = tracker.process(rgb, capture_us, meta.first_frame_index + i)
            out.append(PoseMsg(**base, frame=pose.to_json(), latency_ms=(time.perf_counter() - t0) * 1e3))
        return out


async def run(consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, worker: PoseWorker) -> None:
    loop = asyncio.get_running_loop()
    async for record in consumer:
        key = (record.key or b"").decode(errors="replace")
        try:
            meta, data = unpack_chunk(record.value or b"")
            msgs = await loop.run_in_executor(None, worker.poses_for_chunk, key, meta, data)
        except (SchemaError, ChunkDecodeError, ObjectStoreError) as exc:
            # Bad input loses only itself: the chunk is logged as a gap and the stream goes on.
            log.error("pose.chunk_skipped", key=key, offset=record.offset, error=str(exc))
            await consumer.commit()
            continue
        for msg in msgs:
            await producer.send(POSES, msg.dump(), key=record.key)
        await producer.flush()
        await consumer.commit()
        log.debug("pose.chunk_done", key=key, seq=meta.seq, frames=len(msgs))
