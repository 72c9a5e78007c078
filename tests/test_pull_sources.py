"""Pull sources against real parts: a local HTTP camera that dies and comes back, real files made here,
the Tansu broker; frames read back from the chunks in Kafka."""

from __future__ import annotations

import asyncio
import itertools
import random
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import av
import numpy as np
import pytest
import pytest_asyncio
import structlog
import structlog.testing
from aiokafka import AIOKafkaProducer
from av.video.stream import VideoStream

from ingest.chunk_decoder import decode_chunk
from ingest.errors import SourceError
from ingest.live import CameraMetrics, LiveChunkPipeline, MetricsRegistry
from ingest.publisher import CameraId
from ingest.sources.pull import Backoff, PullCamera
from meetvar.benchmarks.ingest import draw_barcode, read_barcode
from stream_processors.kafka import make_consumer, make_producer
from stream_processors.object_store import LocalObjectStore
from stream_processors.schemas import ChunkMeta, unpack_chunk
from stream_processors.tansu import TansuBroker
from stream_processors.topics import VIDEO_CHUNKS

W, H, FPS = 320, 240, 30


def write_ts(path: Path, frames: int) -> None:
    """An H.264 MPEG-TS camera feed: 320x240 at 30 fps, each frame carrying its counter."""
    with av.open(str(path), "w", format="mpegts") as out:
        stream = cast(VideoStream, out.add_stream("libx264", rate=FPS))
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"preset": "ultrafast", "g": "15"}
        for k in range(frames):
            yuv = np.full((H * 3 // 2, W), 128, np.uint8)
            yuv[:H] = 50 + (k * 5) % 150
            draw_barcode(yuv, W, H, k, 0)
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            frame.pts = k
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


class Camera:
    """An HTTP camera on loopback sending an MPEG-TS file at its real-time rate; :meth:`kill` cuts every
    connection mid-stream, as a camera losing power would; :meth:`start` brings it back on the same port."""

    def __init__(self, path: Path, seconds: float) -> None:
        self.data = path.read_bytes()
        self.rate = len(self.data) / seconds
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}/camera.ts"
        self._server: ThreadingHTTPServer | None = None
        self._sockets: list[socket.socket] = []

    def start(self) -> None:
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                camera._sockets.append(self.connection)
                self.send_response(200)
                self.send_header("Content-Type", "video/mp2t")
                self.end_headers()
                t0, sent, piece = time.monotonic(), 0, 188 * 10
                try:
                    while sent < len(camera.data):
                        self.wfile.write(camera.data[sent : sent + piece])
                        sent += piece
                        if (ahead := t0 + sent / camera.rate - time.monotonic()) > 0:
                            time.sleep(ahead)
                except OSError:
                    pass  # killed

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def kill(self) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
        for sock in self._sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            except OSError:
                pass
        self._sockets.clear()
        self._server = None


@pytest_asyncio.fixture
async def producer(broker: TansuBroker) -> AsyncIterator[AIOKafkaProducer]:
    p = make_producer(broker.bootstrap)
    await p.start()
    yield p
    await p.stop()


def pipelines(
    producer: AIOKafkaProducer, store: LocalObjectStore, key: str
) -> tuple[CameraMetrics, Callable[[Fraction], LiveChunkPipeline]]:
    metrics = MetricsRegistry().camera(key)
    camera = CameraId.parse(key)

    def new(fps: Fraction) -> LiveChunkPipeline:
        return LiveChunkPipeline(producer, camera, store, metrics, fps=fps)

    return metrics, new


async def read_camera(broker: TansuBroker, key: str, streams: int) -> list[tuple[ChunkMeta, bytes]]:
    consumer = make_consumer(broker.bootstrap, None, VIDEO_CHUNKS)
    await consumer.start()
    out: list[tuple[ChunkMeta, bytes]] = []
    try:
        async with asyncio.timeout(20):
            while sum(m.end_of_stream for m, _ in out) < streams:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    out.extend(unpack_chunk(r.value) for r in records if r.key == key.encode())
    finally:
        await consumer.stop()
    return out


async def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


# -- a live HTTP camera that drops and comes back --------------------------------------------------


async def test_http_camera_killed_mid_stream_reconnects_and_records_the_gap(
    broker: TansuBroker, producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    path = tmp_path / "camera.ts"
    write_ts(path, 120)  # 4 s
    camera = Camera(path, seconds=4.0)
    camera.start()
    key = f"test/p1/http-{uuid.uuid4().hex[:8]}"
    metrics, new_pipeline = pipelines(producer, LocalObjectStore(tmp_path / "objects"), key)
    puller = PullCamera(
        camera.url, new_pipeline, metrics, backoff=Backoff(initial_s=0.2, max_s=0.8), timeout_s=3
    )
    task = asyncio.create_task(puller.run())
    try:
        await until(lambda: metrics.frames_in >= 30, 10, "the first connection's frames")
        camera.kill()
        killed_us = time.time_ns() // 1000
        await until(lambda: metrics.state == "ended", 5, "the drop to be noticed")
        first = metrics.frames_in
        await asyncio.sleep(1.0)
        assert metrics.reconnects >= 2  # the drop, then at least one refused connection, backing off
        camera.start()
        await until(lambda: metrics.streams == 2 and metrics.frames_in >= first + 30, 10, "the reconnect")
    finally:
        puller.stop()
        await asyncio.wait_for(task, 10)
        if camera._server is not None:
            camera.kill()

    messages = await read_camera(broker, key, streams=2)
    starts = list(dict.fromkeys(m.stream_start_us for m, _ in messages))
    assert len(starts) == 2
    capture = []
    for start in starts:
        stream = [(m, d) for m, d in messages if m.stream_start_us == start]
        assert stream[-1][0].end_of_stream and [m.seq for m, _ in stream] == list(range(len(stream)))
        counters = [read_barcode(f)[0] for m, d in stream[:-1] for f in decode_chunk(d, len(m.capture_us))]
        # Each connection starts the feed from its beginning; within it nothing is lost or reordered.
        assert counters == list(range(len(counters)))
        capture.append([t for m, _ in stream for t in m.capture_us])
    assert len(capture[0]) == first
    assert sum(map(len, capture)) == metrics.frames_in == metrics.frames_out
    everything = capture[0] + capture[1]
    assert all(b > a for a, b in itertools.pairwise(everything))  # one clock across reconnects
    gap = metrics.gaps[0]
    assert gap.start_us == capture[0][-1] and gap.end_us == capture[1][0]
    assert gap.end_us - gap.start_us >= 1_000_000  # the camera was down for 1 s
    # Frames already in flight or buffered when the camera died still arrive after the kill.
    assert gap.start_us <= killed_us + 1_000_000
    assert "EOF" in gap.reason or "error" in gap.reason, gap.reason
    assert metrics.gaps[-1].reason == "stopped" and metrics.last_error is not None
    steps = [b - a for a, b in itertools.pairwise(capture[1])]
    assert abs(float(np.median(steps)) - 1e6 / FPS) < 2_000  # spacing from the stream's timestamps


# -- files: damaged, odd ------------------------------------------------------------------------------


async def test_truncated_file_ends_cleanly(
    broker: TansuBroker, producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    path = tmp_path / "cut.ts"
    write_ts(path, 90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 55 // 100 + 77])  # mid-packet, mid-frame
    key = f"test/p1/cut-{uuid.uuid4().hex[:8]}"
    metrics, new_pipeline = pipelines(producer, LocalObjectStore(tmp_path / "objects"), key)
    with structlog.testing.capture_logs() as logs:
        await PullCamera(str(path), new_pipeline, metrics, speed=0).run()  # returns: no exception
    messages = await read_camera(broker, key, streams=1)
    assert messages[-1][0].end_of_stream
    counters = [read_barcode(f)[0] for m, d in messages[:-1] for f in decode_chunk(d, len(m.capture_us))]
    assert 30 < len(counters) < 90 and counters == list(range(len(counters)))
    assert metrics.state == "ended" and metrics.frames_out == len(counters)
    ended = [e for e in logs if e["event"] == "pull.source_ended"]
    assert len(ended) == 1 and ended[0]["frames"] == len(counters) and ended[0]["url"] == str(path)
    assert ended[0]["reason"] == metrics.end_reason
    assert metrics.end_reason == "end of file" or str(metrics.end_reason).startswith("read error")
    assert not [e for e in logs if e["log_level"] in ("error", "critical")]


def test_unreadable_file_is_one_clear_line(broker: TansuBroker, tmp_path: Path) -> None:
    path = tmp_path / "cut.mp4"  # MP4 with its index at the end: cut off, nothing can be read
    with av.open(str(path), "w") as out:
        stream = cast(VideoStream, out.add_stream("libx264", rate=FPS))
        stream.width, stream.height = 64, 48
        for k in range(30):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), k * 8, np.uint8), format="rgb24")
            frame.pts = k
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    argv = [
        "camera",
        str(path),
        "--broker",
        broker.bootstrap,
        "--camera",
        "t/p/cut",
        "--store",
        str(tmp_path),
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "meetvar.cli", *argv], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cut.mp4" in lines[0] and "video" in lines[0], proc.stderr


async def test_odd_formats_vfr_and_rotation_are_normalised(
    broker: TansuBroker, producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    """yuv444p, a 90° display matrix and variable frame intervals: upright 4:2:0 chunks, true spacing."""
    path = tmp_path / "phone.mp4"
    intervals_ms = [33, 50, 20, 40, 33, 67] * 4
    pts_ms = [0, *itertools.accumulate(intervals_ms)][:24]
    with av.open(str(path), "w") as out:
        stream = cast(VideoStream, out.add_stream("libx264", rate=FPS))
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv444p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        stream.set_display_rotation(degrees=90)
        for t in pts_ms:
            img = np.full((48, 64, 3), (160, 20, 20), np.uint8)
            img[:8, :16] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    key = f"test/p1/vfr-{uuid.uuid4().hex[:8]}"
    metrics, new_pipeline = pipelines(producer, LocalObjectStore(tmp_path / "objects"), key)
    await PullCamera(str(path), new_pipeline, metrics, speed=1.0).run()
    messages = await read_camera(broker, key, streams=1)

    chunks = messages[:-1]
    assert {(m.width, m.height) for m, _ in chunks} == {(48, 64)}  # upright: rotated a quarter turn
    frames = [f for m, d in chunks for f in decode_chunk(d, len(m.capture_us))]
    assert len(frames) == len(pts_ms)
    ys, xs = np.nonzero(frames[0].min(axis=2) > 200)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (48, 63, 0, 7)  # top-left → bottom-left
    assert np.abs(frames[0][30, 30].astype(int) - (160, 20, 20)).max() < 12  # 4:4:4 → 4:2:0, same colour
    capture = [t for m, _ in chunks for t in m.capture_us]
    steps_ms = [(b - a) / 1000 for a, b in itertools.pairwise(capture)]
    assert steps_ms == pytest.approx(intervals_ms[: len(steps_ms)], abs=1.5)  # VFR spacing kept
    # Chunks go by duration (~0.5 s), not by a frame count that VFR would stretch.
    for m, _ in chunks[:-1]:
        assert 0.4 < (m.capture_us[-1] - m.capture_us[0]) / 1e6 < 0.55


# -- the parts ----------------------------------------------------------------------------------------


def test_backoff_is_exponential_capped_and_jittered() -> None:
    backoff = Backoff(initial_s=0.5, max_s=8.0, factor=2.0, jitter=0.25)
    rng = random.Random(7)
    delays = [backoff.delay(n, rng) for n in range(10)]
    caps = [min(8.0, 0.5 * 2**n) for n in range(10)]
    assert all(0.75 * c <= d <= c for d, c in zip(delays, caps, strict=True))
    assert len(set(delays)) == len(delays)  # jittered: cameras do not retry in lock-step
    assert Backoff(jitter=0).delay(100) == 30.0
    with pytest.raises(ValueError):
        Backoff(initial_s=5, max_s=1)


async def test_srt_without_ffmpeg_support_says_what_to_do(producer: AIOKafkaProducer, tmp_path: Path) -> None:
    metrics, new_pipeline = pipelines(producer, LocalObjectStore(tmp_path), "t/p/srt")
    puller = PullCamera("srt://127.0.0.1:9?mode=caller", new_pipeline, metrics, max_retries=0, timeout_s=1)
    with pytest.raises(SourceError) as info:
        await puller.run()
    message = str(info.value)
    assert "\n" not in message
    assert ("not supported" in message and "relay" in message) or "gave up" in message
