"""``meetvar bench broker``: what the embedded broker costs in CPU as its log grows.

A meet day is 8–10 hours of pose messages. This benchmark produces the pose worker's traffic shape
(bursts of 15 small records every 0.5 s per camera, one produce request per burst) while ``consumers``
consumer groups read them, and reports, per segment of ``segment_s`` seconds, the CPU seconds the
broker (and, for the durable default, the SeaweedFS S3 store under it) used. A flat series is a broker
that can run all day; a rising one is a broker whose cost grows with its log.

Why it exists: Tansu 0.6 on S3 (the demo's durable default) was found to cost CPU per fetch in proportion
to the log's size, so on a 2-core machine it takes cores from the pose worker within minutes. That is
the difference between the live latency with ``--memory-broker`` and without (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from stream_processors.kafka import ensure_topics, make_consumer, make_producer
from stream_processors.seaweed import start_seaweed, stop_weed
from stream_processors.tansu import TansuBroker

TOPIC = "bench.poses"
BURST = 15  # records per pose-worker chunk (0.5 s at 30 fps)
RECORD_BYTES = 2000  # a pose frame's JSON is 1.5-2.5 kB


def _cpu_s(pid: int) -> float:
    """CPU seconds of a process and its children (weed mini runs its servers in one process)."""
    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(pid)
        total = 0.0
        for p in [proc, *proc.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total
    return 0.0


async def _traffic(
    bootstrap: str, pids: dict[str, int], cameras: int, consumers: int, segments: int, segment_s: float
) -> list[dict[str, Any]]:
    await ensure_topics(bootstrap, [TOPIC])
    readers = [make_consumer(bootstrap, f"bench-broker-{i}", TOPIC) for i in range(consumers)]
    for r in readers:
        await r.start()
    received = [0] * consumers

    async def drain(i: int) -> None:
        while True:
            got = await readers[i].getmany(timeout_ms=1000)
            received[i] += sum(len(v) for v in got.values())

    tasks = [asyncio.create_task(drain(i)) for i in range(consumers)]
    producer = make_producer(bootstrap)
    await producer.start()
    out: list[dict[str, Any]] = []
    produced = 0
    payload = b"x" * RECORD_BYTES
    try:
        for seg in range(segments):
            before = {name: _cpu_s(pid) for name, pid in pids.items()}
            started = time.monotonic()
            while time.monotonic() - started < segment_s:
                for cam in range(cameras):
                    for _ in range(BURST):
                        await producer.send(TOPIC, payload, key=f"cam-{cam}".encode())
                    produced += BURST
                await producer.flush()
                await asyncio.sleep(0.5)
            wall = time.monotonic() - started
            used = {name: round(_cpu_s(pid) - before[name], 2) for name, pid in pids.items()}
            row = {
                "segment": seg,
                "log_records": produced,
                "cpu_s": used,
                "cores": round(sum(used.values()) / wall, 2),
            }
            out.append(row)
            print(
                f"segment {seg}: {produced} records in the log, broker side used"
                f" {row['cores']} cores ({used})",
                flush=True,
            )
    finally:
        for t in tasks:
            t.cancel()
        await producer.stop()
        for r in readers:
            await r.stop()
    return out


def bench_broker(
    durable: bool, cameras: int = 1, consumers: int = 3, segments: int = 6, segment_s: float = 10.0
) -> dict[str, Any]:
    """Run the traffic against a fresh Tansu (on SeaweedFS S3 when ``durable``); the JSON report."""
    with tempfile.TemporaryDirectory(prefix="meetvar-bench-broker-") as tmp:
        root = Path(tmp)
        weed = None
        env: dict[str, str] = {}
        storage = "memory://tansu/"
        if durable:
            weed, s3, _ = start_seaweed(root / "s3", "meetvar", "bench-broker-secret")
            s3.ensure_bucket("tansu")
            env, storage = s3.tansu_env, "s3://tansu/"
        try:
            with TansuBroker(root / "logs", storage=storage, env=env) as broker:
                assert broker.pid is not None
                pids = {"tansu": broker.pid} | ({"seaweedfs": weed.pid} if weed is not None else {})
                segs = asyncio.run(_traffic(broker.bootstrap, pids, cameras, consumers, segments, segment_s))
        finally:
            if weed is not None:
                stop_weed(weed)
    first, last = segs[0]["cores"], segs[-1]["cores"]
    minutes = (len(segs) - 1) * segment_s / 60
    return {
        "command": "bench broker",
        "storage": "SeaweedFS S3 (durable default)" if durable else "memory (--memory)",
        "cameras": cameras,
        "consumer_groups": consumers,
        "segment_s": segment_s,
        "segments": segs,
        "cores_first": first,
        "cores_last": last,
        "cores_growth_per_minute": round((last - first) / minutes, 3) if minutes > 0 else None,
    }
