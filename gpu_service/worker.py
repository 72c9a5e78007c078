"""The pose worker: ``video.chunks`` in, one ``poses`` message per frame out.

A consumer-group member, so more workers share the cameras. Each camera stream keeps its own tracker
(the detector runs only when the track is lost). Offsets are committed after a poll's poses are sent:
a worker killed mid-chunk makes its successor redo that chunk, and the referee drops the repeated
frames by capture time (keeping any re-measured bottom one carries), so nothing is lost and nothing is
counted twice. A worker that picks a stream up mid-way first replays the stream's last seconds through
the new tracker without sending them (gpu_service.history), so a squat's bottom reached just before the
restart is still re-measured.

Batching across cameras: each poll takes what the consumer has buffered, up to ``max_batch`` records,
waiting at most ``max_wait_ms`` for the first (the latency bound). Chunks of *different* streams in one
poll are run in lock-step: frame i of every such chunk is cropped by its own tracker, the crops go to
the landmark model as one batch (when the trackers share a backend, see :func:`shared_tracker_factory`),
and each tracker finishes its own frame. Chunks of the same stream stay in order. A batch never
changes a pose: rows are independent (tests/test_backends.py checks batched == unbatched).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from gpu_service.backends.base import InferenceBackend, concat_rows, create_backend
from gpu_service.blazepose import LANDMARK, BlazePoseTracker, PendingPose, model_files
from gpu_service.history import ChunkHistory
from gpu_service.pose_input import decode_for_pose
from ingest.chunk_decoder import Yuv420
from ingest.errors import ChunkDecodeError
from meetvar.metrics import ERRORS, FRAMES, POSE_LATENCY
from referee.keypoints import PoseFrame
from stream_processors.object_store import ObjectStore, ObjectStoreError
from stream_processors.schemas import ChunkMeta, PoseMsg, SchemaError, unpack_chunk
from stream_processors.topics import POSES

log = structlog.get_logger()
TrackerFactory = Callable[[], BlazePoseTracker]
DEFAULT_MAX_BATCH = 8
DEFAULT_MAX_WAIT_MS = 20.0


def shared_tracker_factory(
    backend: str = "onnxruntime", *, threads: int = 1, skip_still: bool = True, **options: Any
) -> TrackerFactory:
    """A factory whose trackers all use one backend instance: one set of model sessions (or one GPU
    engine) for every camera, and what lets the worker batch their crops into one call."""
    shared: InferenceBackend = create_backend(backend, model_files().specs(), threads=threads, **options)
    return lambda: BlazePoseTracker(backend=shared, skip_still=skip_still)


@dataclass
class _Job:
    """One chunk of one stream in a poll: its frames, its tracker and the messages made so far."""

    key: str
    meta: ChunkMeta
    base: dict[str, Any]
    tracker: BlazePoseTracker | None = None
    frames: list[Yuv420] = field(default_factory=list)
    out: list[PoseMsg] = field(default_factory=list)
    error: Exception | None = None


class PoseWorker:
    def __init__(self, store: ObjectStore, tracker_factory: TrackerFactory) -> None:
        self._store = store
        self._factory = tracker_factory
        self._trackers: dict[tuple[str, int], BlazePoseTracker] = {}
        self._next_index: dict[tuple[str, int], int] = {}  # the frame each stream's tracker expects next

    def poses_for_chunk(self, key: str, meta: ChunkMeta, data: bytes) -> list[PoseMsg]:
        """CPU-bound: decode the chunk and run pose on each frame. Raises on unreadable input."""
        result = self.poses_for_chunks([(key, meta, data)])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def poses_for_chunks(
        self, items: Sequence[tuple[str, ChunkMeta, bytes]]
    ) -> list[list[PoseMsg] | Exception]:
        """Poses of several chunks, those of different streams batched frame by frame (module doc).

        Chunks are taken in rounds: round r holds the r-th chunk of each stream key, so chunks of one
        stream are processed in order. A chunk that cannot be fetched or decoded gives its exception
        (ChunkDecodeError, ObjectStoreError) in its place and loses only itself; it is detected before
        any tracker sees a frame of its round, so the others' poses do not depend on it.
        """
        per_key: dict[str, list[int]] = defaultdict(list)
        for i, (key, _, _) in enumerate(items):
            per_key[key].append(i)
        results: list[list[PoseMsg] | Exception] = [[] for _ in items]
        rounds = max((len(v) for v in per_key.values()), default=0)
        for r in range(rounds):
            jobs = [(i, self._open(*items[i])) for idx in per_key.values() if r < len(idx) for i in [idx[r]]]
            self._run_lockstep([job for _, job in jobs if job.error is None])
            for i, job in jobs:
                results[i] = job.error if job.error is not None else job.out
        return results

    def needs_history(self, key: str, meta: ChunkMeta) -> bool:
        """Whether this chunk starts a track mid-stream (a restarted worker, a partition moved here, or
        a gap): then the frames before it should be replayed first (:meth:`warm_up`)."""
        return (
            not meta.end_of_stream
            and meta.first_frame_index > 0
            and self._starts_track((key, meta.stream_start_us), meta.first_frame_index)
        )

    def _starts_track(self, stream: tuple[str, int], first_frame_index: int) -> bool:
        """No track of this stream goes on at this frame: none yet, or its last chunk ended elsewhere."""
        return stream not in self._trackers or self._next_index.get(stream) != first_frame_index

    def _forget(self, stream: tuple[str, int]) -> BlazePoseTracker | None:
        """Drop a stream's track (and the frame it expected next); returns its tracker, if it had one."""
        self._next_index.pop(stream, None)
        return self._trackers.pop(stream, None)

    def warm_up(self, key: str, history: Sequence[tuple[ChunkMeta, bytes]]) -> int:
        """Run a stream's chunks before the one it takes over at (gpu_service.history) through a
        fresh tracker and send nothing from them: they were posed and sent by the worker before. The
        track, and the squat's bottom if it was just reached, then carry on into the next chunk as if
        this worker had been there. Returns the frames run; a chunk that cannot be read stops it
        there (the next chunk then starts cold)."""
        frames = 0
        for meta, data in history:
            job = self._open(key, meta, data)
            if job.error is not None:
                log.warning("pose.warm_up_stopped", key=key, seq=meta.seq, error=str(job.error))
                # Its frames are missing from the track: the next chunk must start it cold.
                self._forget((key, meta.stream_start_us))
                break
            self._run_lockstep([job])
            frames += len(job.out)
        if history:
            log.info("pose.warmed_up", key=key, chunks=len(history), frames=frames)
        return frames

    def _open(self, key: str, meta: ChunkMeta, data: bytes) -> _Job:
        base: dict[str, Any] = {
            "meet": meta.meet,
            "platform": meta.platform,
            "camera": meta.camera,
            "stream_start_us": meta.stream_start_us,
            "seq": meta.seq,
        }
        job = _Job(key, meta, base)
        stream = (key, meta.stream_start_us)
        if meta.end_of_stream:
            tracker = self._forget(stream)
            if tracker is not None and (tail := tracker.flush_refined()):
                # The stream ended within a bottom's window: its re-measured frames, on no frame.
                job.out.append(PoseMsg(**base, frame=PoseFrame.carrying(tail).to_json()))
            job.out.append(PoseMsg(**base, end_of_stream=True))
            return job
        if self._starts_track(stream, meta.first_frame_index):
            # A new stream of this camera (a restart or the next loop), or a gap in this one (its
            # partition went to another worker and came back, or chunks are redone after a crash): the
            # old track belongs to other frames, so start afresh (one detector run).
            if stream in self._trackers:
                expected = self._next_index.get(stream)
                log.info("pose.tracker_restarted", key=key, expected=expected, got=meta.first_frame_index)
            for old in [s for s in self._trackers if s[0] == key]:
                self._forget(old)
            self._trackers[stream] = self._factory()
        self._next_index[stream] = meta.first_frame_index + len(meta.capture_us)
        try:
            if meta.ref is not None:
                data = self._store.get(meta.ref)
            job.frames = decode_for_pose(data, len(meta.capture_us))
        except (ChunkDecodeError, ObjectStoreError) as exc:
            job.error = exc
            return job
        job.tracker = self._trackers[stream]
        return job

    def _run_lockstep(self, jobs: list[_Job]) -> None:
        live = [j for j in jobs if j.tracker is not None]
        steps = max((min(len(j.frames), len(j.meta.capture_us)) for j in live), default=0)
        for i in range(steps):
            batch: list[tuple[_Job, PendingPose, float]] = []
            for job in live:
                if i >= len(job.frames) or i >= len(job.meta.capture_us):
                    continue
                assert job.tracker is not None
                t0 = time.perf_counter()
                pending = job.tracker.prepare(
                    job.frames[i], job.meta.capture_us[i], job.meta.first_frame_index + i
                )
                batch.append((job, pending, time.perf_counter() - t0))
            outputs = self._landmarks([(j.tracker, p) for j, p, _ in batch])
            model_s = outputs.pop(-1)
            for (job, pending, pre_s), out in zip(batch, outputs, strict=True):
                assert job.tracker is not None
                t0 = time.perf_counter()
                pose = job.tracker.finish(pending, out)
                latency_ms = (pre_s + float(model_s or 0.0) + time.perf_counter() - t0) * 1e3
                job.out.append(PoseMsg(**job.base, frame=pose.to_json(), latency_ms=latency_ms))

    @staticmethod
    def _landmarks(pending: list[tuple[BlazePoseTracker | None, PendingPose]]) -> list[Any]:
        """Landmark-model outputs for each pending frame (None where there is no crop), one model call
        per distinct backend; the last element is the seconds the model calls took."""
        t0 = time.perf_counter()
        out: list[Any] = [None] * len(pending)
        groups: dict[int, list[int]] = defaultdict(list)
        backends: dict[int, InferenceBackend] = {}
        for k, (tracker, p) in enumerate(pending):
            if tracker is not None and p.tensor is not None:
                groups[id(tracker.backend)].append(k)
                backends[id(tracker.backend)] = tracker.backend
        for bid, rows in groups.items():
            tensors = concat_rows([pending[k][1].tensor for k in rows])
            result = backends[bid].run(LANDMARK, tensors)
            for row, k in enumerate(rows):
                out[k] = {name: value[row : row + 1] for name, value in result.items()}
        out.append(time.perf_counter() - t0)
        return out


async def run(
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    worker: PoseWorker,
    *,
    history: ChunkHistory | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
) -> None:
    """Poll, pose, send, commit, forever. With ``history``, a stream this worker picks up mid-way is
    first warmed up on its preceding chunks (:meth:`PoseWorker.warm_up`)."""
    loop = asyncio.get_running_loop()
    while True:
        polled = await consumer.getmany(timeout_ms=int(max_wait_ms), max_records=max_batch)
        records = [rec for part in polled.values() for rec in part]
        if not records:
            continue
        good: list[tuple[Any, tuple[str, ChunkMeta, bytes]]] = []
        for record in records:
            key = (record.key or b"").decode(errors="replace")
            try:
                meta, data = unpack_chunk(record.value or b"")
            except SchemaError as exc:
                log.error("pose.chunk_skipped", key=key, offset=record.offset, error=str(exc))
                ERRORS.labels(service="pose", kind="bad_message").inc()
                continue
            good.append((record, (key, meta, data)))
        if history is not None:
            await _warm_up_streams(loop, history, worker, good)
        results = await loop.run_in_executor(None, worker.poses_for_chunks, [g for _, g in good])
        for (record, (key, meta, _)), msgs in zip(good, results, strict=True):
            if isinstance(msgs, Exception):
                # Bad input loses only itself: the chunk is logged as a gap and the stream goes on.
                log.error("pose.chunk_skipped", key=key, offset=record.offset, error=str(msgs))
                ERRORS.labels(service="pose", kind="chunk_skipped").inc()
                continue
            for msg in msgs:
                await producer.send(POSES, msg.dump(), key=record.key)
                if msg.frame is not None:
                    POSE_LATENCY.observe(msg.latency_ms / 1e3)
            if msgs:
                FRAMES.labels(camera=key, stage="pose").inc(sum(m.frame is not None for m in msgs))
            log.debug("pose.chunk_done", key=key, seq=meta.seq, frames=len(msgs))
        await producer.flush()
        await consumer.commit()


async def _warm_up_streams(
    loop: asyncio.AbstractEventLoop,
    history: ChunkHistory,
    worker: PoseWorker,
    polled: list[tuple[Any, tuple[str, ChunkMeta, bytes]]],
) -> None:
    """Warm up each camera whose first chunk in this poll starts its track mid-stream. Only the
    first: a camera's tracker is one at a time, so warming a second stream of it would drop the first."""
    seen: set[str] = set()
    for record, (key, meta, _) in polled:
        if key in seen:
            continue
        seen.add(key)
        if worker.needs_history(key, meta):
            tp = TopicPartition(record.topic, record.partition)
            chunks = await history.before(tp, record.offset, key, meta)
            await loop.run_in_executor(None, worker.warm_up, key, chunks)
