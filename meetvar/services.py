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
from stream_processors.object_store import (
    LocalObjectStore,
    ObjectStoreError,
    S3ObjectStore,
    object_store_from_url,
)
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


def open_store(url: str | Path, *, writer: bool) -> LocalObjectStore | S3ObjectStore:
    """``--store`` (a folder, ``file://`` or ``s3://`` URL) → the store, checked before any broker wait.

    A writer creates a missing bucket (a fresh venue needs no manual step); a reader only proves the
    endpoint and credentials. A bad URL, an unreachable endpoint or refused keys are one-line errors.
    """
    from meetvar.errors import UserError

    try:
        store = object_store_from_url(url)
        if isinstance(store, S3ObjectStore) and writer:
            store.ensure_bucket()
    except ObjectStoreError as exc:
        raise UserError(str(exc)) from None
    return store


async def run_ingest(
    bootstrap: str,
    video: Path,
    camera: str,
    store: str | Path,
    loop: bool,
    speed: float,
    resume: bool = False,
    inline_limit: int | None = None,
) -> int:
    """Stream ``video`` as ``camera``; with ``resume``, first finish the pass a killed run left
    unfinished on the broker (:mod:`ingest.resume`), so a restart loses and doubles nothing.
    ``inline_limit``: chunks above it travel as claim checks in ``store`` (default: the publisher's)."""
    from ingest.publisher import DEFAULT_INLINE_LIMIT, CameraId, ResumeMismatch, publish_file
    from ingest.resume import newest_chunk, resumable

    configure("ingest")
    cam = CameraId.parse(camera)
    limit = DEFAULT_INLINE_LIMIT if inline_limit is None else inline_limit
    objects = open_store(store, writer=True)
    await wait_for_broker(bootstrap, timeout=10)
    await ensure_topics(bootstrap, ALL_TOPICS)
    producer = make_producer(bootstrap)
    await producer.start()

    last = resumable(await newest_chunk(bootstrap, cam.key)) if resume else None

    async def stream() -> None:
        nonlocal last
        passes = 0
        while True:
            passes += 1
            if last is not None:
                log.info(
                    "ingest.resume",
                    camera=cam.key,
                    stream_start_us=last.stream_start_us,
                    after_seq=last.seq,
                    frames_sent=last.first_frame_index + len(last.capture_us),
                )
            else:
                log.info("ingest.pass_start", camera=cam.key, video=str(video), speed=speed, pass_no=passes)
            resume_after, last = last, None  # only the first pass after a restart resumes
            try:
                await publish_file(
                    producer, video, cam, objects, speed=speed, resume=resume_after, inline_limit=limit
                )
            except ResumeMismatch as exc:  # raised before any chunk of the pass is sent
                log.warning("ingest.resume_refused", camera=cam.key, error=str(exc))
                continue
            if not loop:
                log.info("ingest.done", camera=cam.key, passes=passes)
                return

    try:
        await _until_signalled(stream())
    finally:
        await producer.stop()
    return 0


#: Bytes of poses the pose worker's producer may put in one record batch (one produce request).
POSE_BATCH_BYTES = 1 << 20


async def run_pose_worker(
    bootstrap: str,
    store: str | Path,
    threads: int,
    *,
    backend: str = "onnxruntime",
    precision: str = "fp32",
    skip_still: bool = True,
) -> int:
    from gpu_service.history import ChunkHistory
    from gpu_service.worker import PoseWorker, run, shared_tracker_factory

    configure("pose")
    # The model first: a backend that cannot run here fails at once, before any broker wait.
    factory = shared_tracker_factory(backend, threads=threads, precision=precision, skip_still=skip_still)
    # Claim checks from any store ingest can write: a folder on this machine or S3 across the network.
    objects = open_store(store, writer=False)
    await wait_for_broker(bootstrap, timeout=10)
    await ensure_topics(bootstrap, ALL_TOPICS)
    consumer = make_consumer(bootstrap, "meetvar-pose", VIDEO_CHUNKS)
    # A chunk's poses in a few produce requests, not one each: on the durable broker every request is
    # an S3 write (measured: ~160 single-record produces/s, ~5,400 records/s batched), too few for
    # three cameras at 30 fps. Safe on Tansu: nobody reads ``poses``' "latest" offset (see kafka.py).
    producer = make_producer(bootstrap, max_batch_size=POSE_BATCH_BYTES)
    # Its own groupless reader, for the chunks before a stream this worker picks up mid-way.
    reader = make_consumer(bootstrap, None)
    await consumer.start()
    await producer.start()
    # One model shared by every camera's tracker, so frames of different cameras share a model call.
    worker = PoseWorker(objects, factory)
    log.info(
        "pose.started",
        store=repr(objects),
        backend=backend,
        precision=precision,
        threads=threads,
        skip_still=skip_still,
    )
    try:
        await reader.start()
        await _until_signalled(run(consumer, producer, worker, history=ChunkHistory(reader)))
    finally:
        await reader.stop()
        await consumer.stop()
        await producer.stop()
    return 0


def run_dashboard(
    bootstrap: str,
    host: str,
    port: int,
    db: Path | str,
    *,
    archive: str | None = None,
    anonymous_viewer: bool = False,
    public_url: str | None = None,
    allowed_origins: list[str] | None = None,
) -> int:
    """The dashboard on ``host:port`` with its database at ``db`` (a SQLite path or any SQLAlchemy URL).

    ``MEETVAR_LOGIN_TOKEN`` (set by ``meetvar demo``, read once and removed from the environment)
    becomes a one-time organizer login; ``anonymous_viewer`` (loopback only) lets anyone on this
    machine watch read-only without an account.
    """
    import ipaddress
    import os

    import uvicorn

    from dashboard.app import DashboardState, create_app
    from dashboard.audit import AuditLog
    from dashboard.auth import ORGANIZER, Auth
    from dashboard.feed import AuditPublisher, kafka_feed, with_audit_topic
    from dashboard.replay import StoreChunkSource
    from dashboard.store import DashboardStore
    from meetvar.errors import UserError
    from stream_processors.explainer import Explainer

    configure("dashboard")
    if anonymous_viewer:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise UserError(
                "--anonymous-viewer is allowed only on a loopback address (e.g. --host 127.0.0.1)"
            )
    objects = open_store(archive, writer=True) if archive else None
    asyncio.run(wait_for_broker(bootstrap, timeout=10))
    origins = {f"http://{host}:{port}", f"http://localhost:{port}", f"http://127.0.0.1:{port}"}
    if public_url:
        origins.add(public_url.rstrip("/"))
    # Phones and tablets on the venue network reach the dashboard by another name than the server's.
    origins.update(origin.rstrip("/") for origin in allowed_origins or ())
    store = DashboardStore(db)
    publisher = AuditPublisher(bootstrap)
    auth = Auth(store.engine, allowed_origins=origins, anonymous_viewer=anonymous_viewer)
    token = os.environ.pop("MEETVAR_LOGIN_TOKEN", None)
    if token:
        organizer = auth.user_by_name("organizer") or auth.create_user("organizer", ORGANIZER, None)
        auth.issue_login_token(organizer, token=token)
    state = DashboardState(
        store,
        auth=auth,
        audit=AuditLog(store.engine, sink=publisher.offer),
        explainer=Explainer() if os.environ.get("ANTHROPIC_API_KEY") else None,
        archive=StoreChunkSource(objects) if objects is not None else None,
    )
    # WHIP ingest shares the dashboard's port (as in the demo) when there is an object store for claims.
    from ingest.whip import CameraTokens, whip_router

    tokens = CameraTokens.load(Path(os.environ.get("MEETVAR_WHIP_TOKENS", "whip-tokens.json")))
    routers = [whip_router(bootstrap, objects, tokens)] if objects is not None else []
    # The head referee's Squat / Rack go out to meet.state (dashboard/signals.py) while the feed runs.
    from dashboard.signals import StatePublisher, with_state_publisher

    feed = with_state_publisher(with_audit_topic(kafka_feed(bootstrap), publisher), StatePublisher(bootstrap))
    app = create_app(state, feed=feed, routers=routers)
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0
