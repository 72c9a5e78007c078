"""Entry points of the long-running services, each a thin shell around its package's logic.

Every service first waits for the broker (a one-line error if it is unreachable), then runs until
SIGTERM/SIGINT, and stops its Kafka clients on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import structlog

from meetvar.logs import configure
from stream_processors.kafka import ensure_topics, make_consumer, make_producer, wait_for_broker
from stream_processors.object_store import LocalObjectStore
from stream_processors.topics import ALL_TOPICS, VIDEO_CHUNKS

log = structlog.get_logger()
T = TypeVar("T")


async def _until_signalled(work: Awaitable[T]) -> T | None:
    """Run ``work`` until it finishes or the process is asked to stop; a stop is a clean exit."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        stopper.cancel()
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None


async def run_ingest(bootstrap: str, video: Path, camera: str, store: Path, loop: bool, speed: float) -> int:
    from ingest.publisher import CameraId, publish_file

    configure("ingest")
    cam = CameraId.parse(camera)
    await wait_for_broker(bootstrap, timeout=10)
    await ensure_topics(bootstrap, ALL_TOPICS)
    producer = make_producer(bootstrap)
    await producer.start()
    objects = LocalObjectStore(store)

    async def stream() -> None:
        passes = 0
        while True:
            passes += 1
            log.info("ingest.pass_start", camera=cam.key, video=str(video), speed=speed, pass_no=passes)
            await publish_file(producer, video, cam, objects, speed=speed)
            if not loop:
                log.info("ingest.done", camera=cam.key, passes=passes)
                return

    try:
        await _until_signalled(stream())
    finally:
        await producer.stop()
    return 0


async def run_pose_worker(bootstrap: str, store: Path, threads: int) -> int:
    from gpu_service.blazepose import BlazePoseTracker
    from gpu_service.worker import PoseWorker, run

    configure("pose")
    await wait_for_broker(bootstrap, timeout=10)
    await ensure_topics(bootstrap, ALL_TOPICS)
    consumer = make_consumer(bootstrap, "meetvar-pose", VIDEO_CHUNKS)
    producer = make_producer(bootstrap)
    await consumer.start()
    await producer.start()
    worker = PoseWorker(LocalObjectStore(store), lambda: BlazePoseTracker(threads=threads))
    log.info("pose.started", backend="onnxruntime-cpu", threads=threads)
    try:
        await _until_signalled(run(consumer, producer, worker))
    finally:
        await consumer.stop()
        await producer.stop()
    return 0


def run_dashboard(bootstrap: str, host: str, port: int, db: Path) -> int:
    import uvicorn

    from dashboard.app import DashboardState, create_app
    from dashboard.feed import kafka_feed
    from dashboard.store import AttemptStore

    configure("dashboard")
    asyncio.run(wait_for_broker(bootstrap, timeout=10))
    origins = {f"http://{host}:{port}", f"http://localhost:{port}", f"http://127.0.0.1:{port}"}
    state = DashboardState(AttemptStore(db), allowed_origins=origins)
    app = create_app(state, feed=kafka_feed(bootstrap))
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0
