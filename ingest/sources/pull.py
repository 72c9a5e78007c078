"""Pull a camera (RTSP, SRT, RTMP, HTTP, or a file) into ``video.chunks``, reconnecting when it drops.

Opening, decoding and normalising are :func:`ingest.sources.file.open_source`'s; this module adds what a
*live* source needs:

* **Reconnect with back-off.** A network source that fails to open, errors or ends is retried forever
  (or ``max_retries`` times) after ``min(max_s, initial_s × factor^n)`` seconds, jittered down by up to
  ``jitter`` so that a venue's cameras do not all hammer a recovering switch in step. A connection that
  delivered frames resets the count. A local file is not retried: its end is the end.
* **One stream per connection.** Each connection is its own stream (``stream_start_us``) ending with an
  end-of-stream marker, like a WHIP session; the time between two connections is a gap in the camera's
  metrics (start and end capture time, reason) and an ``ingest.gap`` log event.
* **Paced reading** at ``speed`` × the media clock, so a file or an HTTP-served recording behaves like
  the camera it stands in for; a live source is never early, so pacing costs it nothing. Capture times
  come from :class:`ingest.live.CaptureClock` (media clock for spacing, wall clock for the origin).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction

import av
import av.error
import structlog

from ingest.errors import SourceError
from ingest.live import CameraMetrics, CaptureClock, LiveChunkPipeline, wall_us
from ingest.sources.file import FileSource, is_url, open_source

log = structlog.get_logger()


@dataclass(frozen=True)
class Backoff:
    """Reconnect delays: exponential, capped, jittered (each delay is scaled by ``U(1 - jitter, 1)``)."""

    initial_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.3

    def __post_init__(self) -> None:
        if not (0 < self.initial_s <= self.max_s and self.factor >= 1 and 0 <= self.jitter < 1):
            raise ValueError(
                f"bad back-off {self}: need 0 < initial_s <= max_s, factor >= 1, 0 <= jitter < 1"
            )

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        base = min(self.max_s, self.initial_s * self.factor ** min(attempt, 64))
        return base * (1 - self.jitter * (rng or random).random())

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        attempt = 0
        while True:
            yield self.delay(attempt, rng)
            attempt += 1


class PullCamera:
    """Runs one pulled camera until :meth:`stop`, a local file's end, or ``max_retries`` failed tries.

    ``new_pipeline(fps)`` makes the :class:`LiveChunkPipeline` of each connection (a fresh stream each
    time; ``fps`` is the source's nominal rate).
    ``SourceError`` escapes :meth:`run` only when a local file cannot be read, or retries run out.
    """

    def __init__(
        self,
        url: str,
        new_pipeline: Callable[[Fraction], LiveChunkPipeline],
        metrics: CameraMetrics,
        *,
        backoff: Backoff | None = None,
        max_retries: int | None = None,
        speed: float = 1.0,
        timeout_s: float = 10.0,
        options: Mapping[str, str] | None = None,
    ) -> None:
        if speed < 0:
            raise ValueError(f"speed must be >= 0 (0 = as fast as the source gives frames), got {speed}")
        self.url, self.new_pipeline, self.metrics = url, new_pipeline, metrics
        self.backoff = backoff or Backoff()
        self.max_retries = max_retries
        self.speed = speed
        self.timeout_s = timeout_s
        self.options = dict(options or {})
        self.network = is_url(url)
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                source = await asyncio.to_thread(
                    open_source, self.url, options=self.options, timeout=self.timeout_s
                )
            except SourceError as exc:
                if isinstance(exc.__cause__, av.error.ProtocolNotFoundError):
                    scheme = self.url.split("://", 1)[0]
                    raise SourceError(
                        f"{scheme}:// is not supported by this build of PyAV's FFmpeg — relay the camera to "
                        f"RTSP, RTMP or UDP MPEG-TS (e.g. ffmpeg -i '{self.url}' -c copy -f mpegts "
                        "udp://127.0.0.1:5000) or install av built against an FFmpeg that has it"
                    ) from exc
                if not self.network:
                    raise
                reason = f"cannot connect: {exc}"
                delivered = 0
            else:
                reason, delivered = await self._stream(source)
            if not self.network:
                if delivered == 0:
                    raise SourceError(f"{self.url}: no frame could be read ({reason})")
                log.info("pull.source_ended", url=self.url, reason=reason, frames=delivered)
                return
            if reason == "stopped":
                return
            failures = 0 if delivered else failures + 1
            if self.max_retries is not None and failures > self.max_retries:
                raise SourceError(f"{self.url}: gave up after {self.max_retries} retries ({reason})")
            delay = self.backoff.delay(failures)
            self.metrics.reconnects += 1
            self.metrics.last_error = reason
            log.warning("pull.reconnect", url=self.url, reason=reason, retry_in_s=round(delay, 3))
            await asyncio.to_thread(self._stop.wait, delay)

    async def _stream(self, source: FileSource) -> tuple[str, int]:
        """One connection as one stream; returns why it ended and how many frames it gave."""
        pipeline = self.new_pipeline(source.fps)
        loop = asyncio.get_running_loop()
        reader = asyncio.ensure_future(asyncio.to_thread(self._read, source, pipeline, loop))
        try:
            reason, frames = await asyncio.shield(reader)
        except asyncio.CancelledError:
            self._stop.set()  # the reader thread sees it within a frame, then we close the stream
            reason, frames = await reader
            await pipeline.close(reason)
            raise
        await pipeline.close(reason)
        return reason, frames

    def _read(
        self, source: FileSource, pipeline: LiveChunkPipeline, loop: asyncio.AbstractEventLoop
    ) -> tuple[str, int]:
        """Reader thread: decode, pace, stamp, hand over (waiting while the pipeline is full)."""
        clock = CaptureClock()
        frames = 0
        t0 = origin = None
        reason = "end of file" if not self.network else "stream ended (EOF)"
        try:
            with source:
                for frame in source:
                    if self._stop.is_set():
                        return "stopped", frames
                    if t0 is None or origin is None:
                        t0, origin = time.monotonic(), frame.pts_us
                    if self.speed > 0:
                        due = t0 + (frame.pts_us - origin) / 1e6 / self.speed
                        if (delay := due - time.monotonic()) > 0 and self._stop.wait(delay):
                            return "stopped", frames
                    arrival = wall_us()
                    push = pipeline.push(frame.frame, clock.capture_us(frame.pts_us, arrival), arrival)
                    asyncio.run_coroutine_threadsafe(push, loop).result()
                    frames += 1
        except SourceError as exc:
            reason = f"read error: {exc}"
        return reason, frames
