"""Live video (WHIP sessions, pull sources) → capture-stamped, GOP-aligned chunks in ``video.chunks``.

The file path can re-encode at leisure; a live camera cannot wait, and cannot be asked to resend. So:

* **Capture time.** A live frame's ``capture_us`` comes from :class:`CaptureClock`: the source's media
  clock (RTP timestamps for WebRTC, container pts for pull sources) gives the spacing between frames,
  free of network and decoder jitter; the server's wall clock gives the origin, as the smallest
  ``arrival - media`` seen over a sliding window. The result is the arrival time of the least-delayed
  frame, so every camera is on the same (server) clock — which multi-camera fusion needs — and no
  camera's own clock has to be trusted. It is never later than the arrival and strictly increasing.
  RTCP sender reports are not used: they give the *camera's* wall clock, which on a phone or an OBS
  laptop may be seconds off the server's and off the other cameras'.
* **Chunks by duration.** WebRTC frame rates vary (a phone may send 24–30 fps, dropping under load), so
  a chunk closes when the next frame would take it past ``chunk_seconds`` rather than after a count.
* **Never drop, bounded buffer.** The encoder runs on one executor thread per camera (order kept, the
  event loop free). When it falls behind, frames wait in a queue of ``max_backlog`` frames; when that
  is full the receiver stops reading (the WebRTC track then holds the frames) and a loud log and the
  ``backpressure_events`` metric say the machine is too small. A Kafka outage is retried forever.
"""

from __future__ import annotations

import asyncio
import functools
import statistics
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any, TypeVar

import av
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from ingest.chunker import Chunk, Chunker
from ingest.publisher import DEFAULT_INLINE_LIMIT, CameraId, ChunkSink
from ingest.sources.file import FrameNormalizer, SourceFrame
from stream_processors.object_store import ObjectStore, ObjectStoreError

log = structlog.get_logger()
T = TypeVar("T")

DEFAULT_FPS = 30
DEFAULT_CHUNK_SECONDS = 0.5
DEFAULT_MAX_BACKLOG = 300  # frames: 10 s at 30 fps, ~415 MB of 720p yuv420p
DEFAULT_GAP_SECONDS = 0.5  # a pause longer than one chunk is a gap judging must know about
MAX_FPS = 120  # caps frames per chunk, whatever the duration rule says
_LATENCY_WINDOW = 9000  # per-frame latency samples kept: 5 min at 30 fps
_GAPS_KEPT = 100


def wall_us() -> int:
    return time.time_ns() // 1000


class CaptureClock:
    """Maps a source's media time (µs) to capture time on the server's wall clock (µs); see module doc.

    A jump of the media clock against the wall clock by more than ``discontinuity_s`` (an encoder
    restart, an RTP timestamp reset, a reconnect) re-anchors the clock instead of bending time.
    """

    def __init__(self, window_s: float = 5.0, discontinuity_s: float = 1.0) -> None:
        self.window_us = round(window_s * 1e6)
        self.discontinuity_us = round(discontinuity_s * 1e6)
        self.resets = 0
        self._mins: deque[tuple[int, int]] = deque()  # (arrival_us, offset_us), offsets increasing
        self._last: int | None = None

    def reset(self) -> None:
        self._mins.clear()
        self.resets += 1

    def capture_us(self, media_us: int, arrival_us: int) -> int:
        offset = arrival_us - media_us
        if self._mins and abs(offset - self._mins[0][1]) > self.discontinuity_us:
            self.reset()
        while self._mins and self._mins[-1][1] >= offset:
            self._mins.pop()
        self._mins.append((arrival_us, offset))
        while self._mins[0][0] < arrival_us - self.window_us:
            self._mins.popleft()
        capture = min(media_us + self._mins[0][1], arrival_us)
        if self._last is not None and capture <= self._last:
            capture = self._last + 1
        self._last = capture
        return capture


@dataclass
class Gap:
    """A stretch of time with no frames from a camera: judging must not call an attempt across it."""

    start_us: int | None  # last capture time before the gap (None: nothing had arrived yet)
    end_us: int | None  # first capture time after it (None: still open)
    reason: str


@dataclass
class CameraMetrics:
    """Per-camera counters across all of its streams (WHIP sessions, reconnects); see ``snapshot``."""

    camera: str
    state: str = "idle"  # idle | live | ended
    streams: int = 0
    frames_in: int = 0
    frames_out: int = 0
    chunks_out: int = 0
    bytes_out: int = 0
    by_reference: int = 0
    queue_depth: int = 0
    queue_max: int = 0
    backpressure_events: int = 0
    send_retries: int = 0
    reconnects: int = 0
    last_error: str | None = None
    last_capture_us: int | None = None
    last_arrival_us: int | None = None
    gap_count: int = 0
    gaps: deque[Gap] = field(default_factory=lambda: deque(maxlen=_GAPS_KEPT))
    end_reason: str | None = None
    latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=_LATENCY_WINDOW))

    def frame_in(self, capture_us: int, arrival_us: int, gap_us: int) -> None:
        """Count a frame; close an open gap, or record a stall when frames paused longer than ``gap_us``."""
        if self.gaps and self.gaps[-1].end_us is None:
            self._close_gap(capture_us)
        elif self.last_capture_us is not None and capture_us - self.last_capture_us > gap_us:
            self._open_gap(self.last_capture_us, "stall")
            self._close_gap(capture_us)
        self.frames_in += 1
        self.last_capture_us = capture_us
        self.last_arrival_us = arrival_us

    def stream_started(self) -> None:
        self.streams += 1
        self.state = "live"
        self.end_reason = None

    def stream_ended(self, reason: str) -> None:
        """A stream ended: its gap stays open until the camera's next frame, whenever that comes."""
        self.state = "ended"
        self.end_reason = reason
        self._open_gap(self.last_capture_us, reason)

    def chunk_sent(self, chunk: Chunk, ack_us: int, by_reference: bool) -> None:
        self.frames_out += chunk.frame_count
        self.chunks_out += 1
        self.bytes_out += len(chunk.data)
        self.by_reference += int(by_reference)
        self.latency_ms.extend((ack_us - c) / 1000 for c in chunk.capture_us)

    def _open_gap(self, start_us: int | None, reason: str) -> None:
        self.gap_count += 1
        self.gaps.append(Gap(start_us, None, reason))
        log.warning("ingest.gap_start", camera=self.camera, start_us=start_us, reason=reason)

    def _close_gap(self, end_us: int) -> None:
        gap = self.gaps[-1]
        gap.end_us = end_us
        seconds = None if gap.start_us is None else round((end_us - gap.start_us) / 1e6, 3)
        log.warning("ingest.gap", camera=self.camera, seconds=seconds, **asdict(gap))

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready; latency is capture → broker ack per frame, over the last ~5 min."""
        lat = sorted(self.latency_ms)
        return {
            "camera": self.camera,
            "state": self.state,
            "streams": self.streams,
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "chunks_out": self.chunks_out,
            "bytes_out": self.bytes_out,
            "by_reference": self.by_reference,
            "queue_depth": self.queue_depth,
            "queue_max": self.queue_max,
            "backpressure_events": self.backpressure_events,
            "send_retries": self.send_retries,
            "reconnects": self.reconnects,
            "last_error": self.last_error,
            "last_capture_us": self.last_capture_us,
            "last_arrival_us": self.last_arrival_us,
            "end_reason": self.end_reason,
            "gap_count": self.gap_count,
            "gaps": [asdict(g) for g in self.gaps],
            "latency_ms": {
                "p50": round(statistics.median(lat), 1) if lat else None,
                "p99": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1) if lat else None,
                "samples": len(lat),
            },
        }


class MetricsRegistry:
    """Metrics of every camera this process has seen, kept after its streams end (gaps matter then)."""

    def __init__(self) -> None:
        self._cameras: dict[str, CameraMetrics] = {}

    def camera(self, key: str) -> CameraMetrics:
        if key not in self._cameras:
            self._cameras[key] = CameraMetrics(key)
        return self._cameras[key]

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {key: m.snapshot() for key, m in sorted(self._cameras.items())}


_END = None


class LiveChunkPipeline:
    """One stream of one camera: ``push`` frames with their capture time, then ``close`` exactly once.

    The stream (and its ``stream_start_us``) begins with the first frame, so a session that never got
    a frame publishes nothing, not even an end-of-stream marker.
    """

    def __init__(
        self,
        producer: AIOKafkaProducer,
        camera: CameraId,
        store: ObjectStore,
        metrics: CameraMetrics,
        *,
        normalizer: FrameNormalizer | None = None,
        fps: Fraction | float = DEFAULT_FPS,
        chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
        gap_seconds: float = DEFAULT_GAP_SECONDS,
        inline_limit: int = DEFAULT_INLINE_LIMIT,
    ) -> None:
        self.producer, self.camera, self.store, self.metrics = producer, camera, store, metrics
        self.normalizer = normalizer
        self.fps = Fraction(fps).limit_denominator(1000)
        self.chunk_us = round(chunk_seconds * 1e6)
        self.gap_us = round(gap_seconds * 1e6)
        self.inline_limit = inline_limit
        self.sink: ChunkSink | None = None
        self._queue: asyncio.Queue[tuple[av.VideoFrame, int] | None] = asyncio.Queue(max_backlog)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"encode-{camera.camera}")
        self._chunker: Chunker | None = None
        self._index = 0
        self._seg_first_us: int | None = None
        self._interval_us = 1_000_000 / float(self.fps)
        self._prev_pts = 0
        self._last_capture: int | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self._congested = False

    async def push(self, frame: av.VideoFrame, capture_us: int, arrival_us: int | None = None) -> None:
        """Queue a frame; waits (never drops) while the encoder is ``max_backlog`` frames behind."""
        if self._closed:
            raise RuntimeError(f"pipeline of {self.camera.key} is closed")
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name=f"live-{self.camera.key}")
            self.metrics.stream_started()
        elif self._worker.done():
            raise RuntimeError(f"the encoder of {self.camera.key} has failed; see the log")
        if self._last_capture is not None and capture_us <= self._last_capture:
            raise ValueError(f"capture times must increase: {capture_us} after {self._last_capture}")
        self._last_capture = capture_us
        self.metrics.frame_in(capture_us, wall_us() if arrival_us is None else arrival_us, self.gap_us)
        if self._queue.full():
            self.metrics.backpressure_events += 1
            if not self._congested:
                self._congested = True
                log.error(
                    "ingest.backpressure",
                    camera=self.camera.key,
                    backlog=self._queue.qsize(),
                    hint="the encoder cannot keep up: frames now wait upstream (none dropped); "
                    "give ingest more CPU or fewer cameras",
                )
        await self._queue.put((frame, capture_us))
        depth = self._queue.qsize()
        self.metrics.queue_depth = depth
        self.metrics.queue_max = max(self.metrics.queue_max, depth)
        if self._congested and depth < self._queue.maxsize // 2:
            self._congested = False
            log.warning("ingest.backpressure_over", camera=self.camera.key, backlog=depth)

    async def close(self, reason: str) -> None:
        """Encode what is queued, publish the last (partial) chunk and the end-of-stream marker."""
        if self._closed:
            return
        self._closed = True
        worker = self._worker
        try:
            if worker is not None:
                if not worker.done():
                    await self._queue.put(_END)
                try:
                    await worker
                except Exception:
                    log.exception("ingest.pipeline_failed", camera=self.camera.key)
                    reason = f"{reason}; the pipeline failed"
                self.metrics.stream_ended(reason)
                log.info(
                    "ingest.stream_end",
                    camera=self.camera.key,
                    reason=reason,
                    frames_in=self.metrics.frames_in,
                    frames_out=self.metrics.frames_out,
                    chunks_out=self.metrics.chunks_out,
                )
        finally:
            self._executor.shutdown(wait=False)

    # -- the worker: encode on the executor thread, publish on the loop -----------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while (item := await self._queue.get()) is not _END:
            self.metrics.queue_depth = self._queue.qsize()
            for chunk in await loop.run_in_executor(self._executor, self._encode, *item):
                await self._send(chunk)
        if self._chunker is not None:
            last = await loop.run_in_executor(self._executor, self._chunker.flush)
            if last is not None:
                await self._send(last)
        if self.sink is not None:
            await self._retrying(self.sink.end)

    def _encode(self, frame: av.VideoFrame, capture_us: int) -> list[Chunk]:
        if self.normalizer is not None:
            frame = self.normalizer(frame)
        if self._chunker is None:
            frames = max(1, round(self.chunk_us / 1e6 * MAX_FPS))
            self._chunker = Chunker(self.fps, start_us=capture_us, chunk_frames=frames)
        chunker = self._chunker
        pts = capture_us - chunker.start_us
        if self._index and (step := capture_us - chunker.start_us - self._prev_pts) < self.gap_us:
            self._interval_us += (step - self._interval_us) / 8  # EWMA of the frame interval
        self._prev_pts = pts
        done = chunker.push(SourceFrame(self._index, pts, frame))
        self._index += 1
        if done and done[-1].pts_us[-1] == pts:
            self._seg_first_us = None
        elif self._seg_first_us is None or done:
            self._seg_first_us = pts
        # Close when the next frame would take the chunk past its duration (half a frame of slack).
        if self._seg_first_us is not None and (
            pts - self._seg_first_us + 1.5 * self._interval_us >= self.chunk_us
        ):
            if (last := chunker.flush()) is not None:
                done.append(last)
            self._seg_first_us = None
        return done

    async def _send(self, chunk: Chunk) -> None:
        if self.sink is None:
            start = chunk.capture_us[0] - chunk.pts_us[0]
            self.sink = ChunkSink(
                self.producer, self.camera, self.store, start_us=start, inline_limit=self.inline_limit
            )
        meta = await self._retrying(functools.partial(self.sink.send, chunk))
        self.metrics.chunk_sent(chunk, wall_us(), by_reference=meta.ref is not None)

    async def _retrying(self, send: Callable[[], Awaitable[T]]) -> T:
        """Kafka or the object store down is an outage to ride out, not a reason to lose video: retry with
        capped back-off (frames queue meanwhile, then back-pressure)."""
        delay = 0.2
        while True:
            try:
                return await send()
            except (KafkaError, ObjectStoreError) as exc:
                self.metrics.send_retries += 1
                log.error("ingest.send_retry", camera=self.camera.key, error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
