"""``meetvar bench workers``: how the pose service scales out — frames/s with 1, 2, … pose workers in
one consumer group on a real broker.

For each worker count: a fresh Tansu broker, ``video.chunks`` split in partitions by camera
(:data:`stream_processors.topics.VIDEO_CHUNKS_PARTITIONS`), W ``meetvar pose-worker`` processes
started as an operator would start them, one warm-up chunk per camera (until every camera's poses
come back, so the group has settled and every worker has loaded its model), then the measured chunks
of every camera published at once. The figure is pose frames/s from that publish until the last of
their poses is on ``poses`` — what decoding + pose costs per frame across the group, since the worker
processes decode in parallel (PyAV holds the GIL, so parallel decoding in Python means processes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ingest.chunker import Chunk
from ingest.normalize import chunks_from_file
from ingest.publisher import CameraId, ChunkSink
from meetvar.cli import bundled_clip
from meetvar.errors import UserError
from stream_processors.kafka import ensure_topics, make_consumer, make_producer
from stream_processors.object_store import LocalObjectStore
from stream_processors.schemas import PoseMsg
from stream_processors.tansu import TansuBroker
from stream_processors.topics import ALL_TOPICS, POSES, VIDEO_CHUNKS_PARTITIONS


@contextlib.contextmanager
def _workers(count: int, bootstrap: str, store: Path, logs: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = []
    try:
        for i in range(count):
            log = open(logs / f"pose-worker-{i}.log", "wb")  # noqa: SIM115 — closed with the process
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "meetvar.cli",
                        "pose-worker",
                        "--broker",
                        bootstrap,
                        "--store",
                        str(store),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            )
        yield procs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


async def _run(
    bootstrap: str,
    store: Path,
    chunks: list[Chunk],
    cameras: int,
    measured: int,
    timeout: float,
    procs: list[Any],
) -> dict[str, Any]:
    await ensure_topics(bootstrap, ALL_TOPICS)
    producer = make_producer(bootstrap)
    consumer = make_consumer(bootstrap, None, POSES)
    await producer.start()
    await consumer.start()
    objects = LocalObjectStore(store)
    ids = spread_cameras(cameras)
    sinks = [ChunkSink(producer, cam, objects, start_us=1_000_000) for cam in ids]
    seen: Counter[tuple[str, int]] = Counter()  # (camera, seq) → pose frames

    async def drain_until(want: set[tuple[str, int]], frames_each: int, deadline: float) -> float:
        while any(seen[w] < frames_each for w in want):
            if time.monotonic() > deadline:
                dead = [p.args for p in procs if p.poll() is not None]
                raise UserError(
                    f"poses missing after {timeout:.0f} s ({sum(seen[w] >= frames_each for w in want)} of "
                    f"{len(want)} chunks done; exited workers: {len(dead)}) — see the pose-worker logs"
                )
            polled = await consumer.getmany(timeout_ms=200)
            for records in polled.values():
                for rec in records:
                    msg = PoseMsg.parse(rec.value)
                    if msg.frame is not None:
                        seen[(msg.camera, msg.seq)] += 1
        return time.monotonic()

    try:
        # Warm-up: one chunk per camera, until every camera's poses are back (group settled, models loaded).
        for sink in sinks:
            await sink.send(chunks[0])
        await drain_until({(c.camera, 0) for c in ids}, chunks[0].frame_count, time.monotonic() + timeout)
        frames = sum(chunks[1 + i % (len(chunks) - 1)].frame_count for i in range(measured)) * cameras
        t0 = time.monotonic()
        for i in range(measured):
            for sink in sinks:
                await sink.send(chunks[1 + i % (len(chunks) - 1)])
        want = {(c.camera, s) for c in ids for s in range(1, measured + 1)}
        frames_each = min(ch.frame_count for ch in chunks[1:])
        end = await drain_until(want, frames_each, t0 + timeout)
    finally:
        await consumer.stop()
        await producer.stop()
    return {"frames": frames, "seconds": round(end - t0, 3), "fps": round(frames / (end - t0), 1)}


def spread_cameras(count: int) -> list[CameraId]:
    """``count`` camera ids whose keys hash to partitions 0, 1, 2, … of ``video.chunks``, so that the
    consumer group's round-robin assignment gives every worker its share of cameras. Plain names
    (cam0, cam1, …) hash where they hash: four of them land on partitions 5, 1, 6 and 3, which two
    workers split 1:3 — that would measure the hash, not the workers (docs/benchmarks.md)."""
    from aiokafka.partitioner import DefaultPartitioner

    partitions = list(range(VIDEO_CHUNKS_PARTITIONS))
    partition_of = DefaultPartitioner()
    wanted = min(count, VIDEO_CHUNKS_PARTITIONS)
    chosen: dict[int, CameraId] = {}
    n = 0
    while len(chosen) < wanted:
        cam = CameraId("bench", "p1", f"cam{n}")
        if (p := partition_of(cam.key.encode(), partitions, partitions)) < wanted:
            chosen.setdefault(p, cam)
        n += 1
    spread = [chosen[p] for p in sorted(chosen)]
    extra = [CameraId("bench", "p1", f"extra{k}") for k in range(count - len(spread))]
    return spread + extra


def run_bench_workers(args: argparse.Namespace) -> dict[str, Any]:
    counts = [int(x) for x in str(args.workers).split(",") if x.strip()]
    if not counts or min(counts) < 1 or max(counts) > VIDEO_CHUNKS_PARTITIONS:
        raise UserError(
            f"--workers takes counts from 1 to {VIDEO_CHUNKS_PARTITIONS} (the video.chunks partitions)"
        )
    video = Path(args.video) if args.video else bundled_clip()
    chunks = list(chunks_from_file(video))
    if len(chunks) < 2:
        raise UserError(f"{video} is too short: the benchmark needs at least two chunks (1 s)")
    runs = []
    for count in counts:
        with tempfile.TemporaryDirectory(prefix="meetvar-bench-workers-") as tmp:
            work = Path(tmp)
            (work / "store").mkdir()
            with (
                TansuBroker(work / "broker") as broker,
                _workers(count, broker.bootstrap, work / "store", work) as procs,
            ):
                figures = asyncio.run(
                    _run(
                        broker.bootstrap,
                        work / "store",
                        chunks,
                        args.cameras,
                        args.chunks,
                        args.timeout,
                        procs,
                    )
                )
        runs.append({"workers": count, **figures})
        print(f"{count} worker(s): {figures['fps']} frames/s", file=sys.stderr, flush=True)
    base = runs[0]["fps"]
    for run in runs:
        run["speedup"] = round(run["fps"] / base, 2) if base else None
    return {
        "benchmark": "workers",
        "video": str(video),
        "cameras": args.cameras,
        "chunks_per_camera": args.chunks,
        "cpus": os.cpu_count(),
        "runs": runs,
    }
