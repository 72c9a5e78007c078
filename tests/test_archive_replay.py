"""Every byte kept, replayable: the archiver under the real pipeline, and a replay into a fresh one.

The main test runs the services as a user would — ingest, pose worker, referee (faust) and archiver as
real subprocesses on a real broker — on seconds 5.3–12 of the bundled clip (its first rep bottoms at
10.5 s), archives the meet to a folder, then replays the archive into a *fresh* broker with fresh
services and requires the same decisions: same attempt ids, same attempt records, field for field.
The S3 tests run the archiver in-process against SeaweedFS and a fresh broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import pytest

from ingest.normalize import chunks_from_file
from ingest.publisher import CameraId, ChunkSink
from stream_processors.archiver import Archiver, read_log, run_archiver
from stream_processors.kafka import ensure_topics, make_consumer, make_producer
from stream_processors.object_store import LocalObjectStore, ObjectStoreError
from stream_processors.replay import ReplayStats, replay_meet
from stream_processors.schemas import ChunkMeta, DecisionMsg, PoseMsg, pack_chunk, unpack_chunk
from stream_processors.tansu import TansuBroker
from stream_processors.topics import (
    ALL_TOPICS,
    AUDIT,
    DECISIONS,
    EXPLANATIONS,
    MEET_STATE,
    POSES,
    VIDEO_CHUNKS,
)
from tests.conftest import SeaweedS3

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "ingest/samples/rohanx01_squat.mp4"
CUT_FROM_S, CUT_END_S = 5.0, 12.0
FIRST_BOTTOM_S = 10.5  # the clip's first rep bottoms here
FAST_GROUP = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 200, "rebalance_timeout_ms": 2000}


@dataclass(frozen=True)
class Clip:
    path: Path
    offset_s: float  # where in the bundled clip it starts


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    """Seconds 5.3–12 of the bundled clip: from its second key frame (the lifter standing, before the
    first rep) to after the first rep's lockout. Packets are copied (no re-encode) and cut in decode
    order, so every frame kept has its references. Half the frames of the first 12 s: half the time."""
    out_path = tmp_path_factory.mktemp("clip") / "squat-cut.mp4"
    offset: float | None = None
    with av.open(str(CLIP)) as src, av.open(str(out_path), "w") as out:
        stream = src.streams.video[0]
        tb = stream.time_base
        assert tb is not None
        copy = out.add_stream_from_template(stream)
        for packet in src.demux(stream):
            if packet.dts is None or packet.pts is None:
                continue
            if packet.dts * tb >= CUT_END_S:
                break
            if offset is None:
                if not (packet.is_keyframe and packet.pts * tb >= CUT_FROM_S):
                    continue
                offset = float(packet.pts * tb)
            packet.stream = copy
            out.mux(packet)
    assert offset is not None
    return Clip(out_path, offset)


# --- running services --------------------------------------------------------------------------


class Services:
    """Child processes of ``meetvar``, each with its own log, stopped (SIGTERM, then SIGKILL) together."""

    def __init__(self, logs: Path, env: dict[str, str] | None = None) -> None:
        self.logs = logs
        self.env = env
        logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "meetvar.cli", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=REPO,
                env=self.env,
                start_new_session=True,
            )
        self.procs[name] = proc
        return proc

    def check_alive(self, *names: str) -> None:
        for name in names:
            code = self.procs[name].poll()
            if code is not None:
                raise AssertionError(f"{name} exited with {code}:\n{self.tail(name)}")

    def tail(self, name: str, lines: int = 30) -> str:
        return "\n".join((self.logs / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def read_topics(bootstrap: str, *topics: str, quiet_s: float = 2.0) -> dict[str, list[Any]]:
    """Every record of ``topics`` (group-less, from the start), read until nothing new for ``quiet_s``."""
    consumer = make_consumer(bootstrap, None, *topics)
    await consumer.start()
    records: dict[str, list[Any]] = {t: [] for t in topics}
    try:
        last_new = time.monotonic()
        while time.monotonic() - last_new < quiet_s:
            batches = await consumer.getmany(timeout_ms=200)
            for tp, part in batches.items():
                if part:
                    records[tp.topic] += part
                    last_new = time.monotonic()
    finally:
        await consumer.stop()
    for part in records.values():
        part.sort(key=lambda r: (r.partition, r.offset))
    return records


async def wait_for_judging(
    bootstrap: str, services: Services, names: tuple[str, ...], timeout: float
) -> None:
    """Until the pose worker has sent its end-of-stream marker and the referee had time to close the
    stream (the decisions topic then stays quiet)."""
    consumer = make_consumer(bootstrap, None, POSES)
    await consumer.start()
    deadline = time.monotonic() + timeout
    try:
        done = False
        while not done:
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {n}\n{services.tail(n)}" for n in names)
                raise TimeoutError(f"no end-of-stream pose within {timeout} s\n{logs}")
            services.check_alive(*names)
            batches = await consumer.getmany(timeout_ms=300)
            done = any(PoseMsg.parse(r.value).end_of_stream for part in batches.values() for r in part)
    finally:
        await consumer.stop()


def published(bootstrap: str) -> tuple[list[DecisionMsg], list[tuple[ChunkMeta, bytes]], list[Any]]:
    """Decisions, chunks and explanation records on the broker, once the referee has gone quiet."""
    got = asyncio.run(read_topics(bootstrap, DECISIONS, VIDEO_CHUNKS, EXPLANATIONS))
    return (
        [DecisionMsg.parse(r.value) for r in got[DECISIONS]],
        [unpack_chunk(r.value) for r in got[VIDEO_CHUNKS]],
        got[EXPLANATIONS],
    )


def comparable(d: DecisionMsg) -> dict[str, Any]:
    """A decision minus the wall-clock fields (when it was made), which a replay cannot share."""
    return d.model_dump(exclude={"decided_us", "rack_to_call_ms"})


# --- the real pipeline, archived, replayed -----------------------------------------------------------


def test_live_and_replayed_decisions_are_identical(clip: Clip, tmp_path: Path) -> None:
    meet = f"arch{uuid.uuid4().hex[:6]}"
    camera = f"{meet}/platform-1/side"
    objects = tmp_path / "objects"  # ingest's claim checks and the archive share a folder, as in the demo
    started = time.monotonic()

    # Live: ingest → pose → referee, with the archiver keeping everything.
    with TansuBroker(tmp_path / "broker-live") as live, Services(tmp_path / "logs-live") as svc:
        b = live.bootstrap
        asyncio.run(ensure_topics(b, ALL_TOPICS))
        svc.start("archiver", "archiver", "--broker", b, "--store", str(objects))
        svc.start("pose", "pose-worker", "--broker", b, "--store", str(objects))
        svc.start("referee", "referee", "--broker", b, "--data-dir", str(tmp_path / "referee-live"))
        ingest = ("ingest", str(clip.path), "--broker", b, "--camera", camera, "--store", str(objects))
        svc.start("ingest", *ingest, "--speed", "0")
        asyncio.run(wait_for_judging(b, svc, ("pose", "referee", "archiver"), timeout=120))
        live_decisions, live_chunks, live_explanations = published(b)
        store = LocalObjectStore(objects)
        deadline = time.monotonic() + 20
        while len(read_log(store, meet, DECISIONS)) < len(live_decisions) or len(
            read_log(store, meet, EXPLANATIONS)
        ) < len(live_explanations):
            assert time.monotonic() < deadline, f"archiver did not catch up:\n{svc.tail('archiver')}"
            time.sleep(0.2)
        assert svc.procs["ingest"].wait(timeout=30) == 0, svc.tail("ingest")
    live_s = time.monotonic() - started

    assert live_decisions, "the live pipeline made no call on the clip"
    first = live_decisions[0].attempt
    assert first["rep"] == 1 and abs(clip.offset_s + first["bottom_s"] - FIRST_BOTTOM_S) < 0.5

    # Every byte kept: each chunk that travelled is in the archive, bytes and metadata identical.
    stream_start = live_chunks[0][0].stream_start_us
    for meta, data in live_chunks:
        stem = f"{camera}/{stream_start}/{meta.seq:08d}"
        assert ChunkMeta.parse(store.get(store.ref(f"{stem}.json"))) == meta
        if not meta.end_of_stream:
            assert store.get(store.ref(f"{stem}.ts")) == data
    assert live_chunks[-1][0].end_of_stream
    assert (
        len(store.list(f"{camera}/{stream_start}/")) == 2 * len(live_chunks) - 1
    )  # .ts + .json; marker .json
    archived = [DecisionMsg.parse(json.dumps(e["value"]).encode()) for e in read_log(store, meet, DECISIONS)]
    assert archived == live_decisions  # the audit record is exactly what was published
    assert [e["value"]["attempt_id"] for e in read_log(store, meet, EXPLANATIONS)] == [
        d.attempt_id for d in live_decisions
    ]

    # Replay into a fresh broker with fresh services.
    started = time.monotonic()
    with TansuBroker(tmp_path / "broker-replay") as fresh, Services(tmp_path / "logs-replay") as svc:
        b = fresh.bootstrap
        asyncio.run(ensure_topics(b, ALL_TOPICS))
        svc.start("pose", "pose-worker", "--broker", b, "--store", str(tmp_path / "objects-replay"))
        svc.start("referee", "referee", "--broker", b, "--data-dir", str(tmp_path / "referee-replay"))
        replay = subprocess.run(
            [sys.executable, "-m", "meetvar.cli", "replay", "--meet", meet, "--speed", "max", "--broker", b,
             "--store", objects.as_uri(), "--json"],
            capture_output=True, text=True, timeout=120, cwd=REPO,
        )  # fmt: skip
        assert replay.returncode == 0, replay.stderr[-3000:]
        figures = json.loads(replay.stdout.strip().splitlines()[-1])
        asyncio.run(wait_for_judging(b, svc, ("pose", "referee"), timeout=120))
        replayed_decisions, replayed_chunks, _ = published(b)
    replay_s = time.monotonic() - started
    print(
        f"\nlive pipeline {live_s:.1f} s, replay pipeline {replay_s:.1f} s;"
        f" replay publish: {figures['chunks']} chunks, {figures['mb']} MB,"
        f" {figures['media_s']} s of video in {figures['elapsed_s']} s ({figures['speed_x']}x)"
    )

    # The replay is the live stream again: same messages, same bytes, same order.
    assert [(m, d) for m, d in replayed_chunks] == live_chunks
    assert figures["chunks"] == len(live_chunks) - 1 and figures["end_markers"] == 1
    # Live and replayed decisions must be identical.
    assert [d.attempt_id for d in replayed_decisions] == [d.attempt_id for d in live_decisions]
    assert [comparable(d) for d in replayed_decisions] == [comparable(d) for d in live_decisions]


def test_replay_of_unknown_meet_is_a_one_line_error(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "meetvar.cli", "replay", "--meet", "nope", "--broker", "127.0.0.1:1",
         "--store", str(tmp_path)],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.strip().startswith("meetvar: no archived chunks of meet 'nope'")
    assert "Traceback" not in run.stderr


# --- the archiver on S3 (SeaweedFS), in process -------------------------------------------------------


def _clip_chunks(clip: Clip, frames: int) -> list[Any]:
    return list(chunks_from_file(clip.path, start_us=1_767_225_600_000_000, max_frames=frames))


async def _archive_until(
    bootstrap: str, archiver: Archiver, group: str, done: Any, timeout: float = 30
) -> None:
    consumer = make_consumer(bootstrap, group, VIDEO_CHUNKS, DECISIONS, EXPLANATIONS, MEET_STATE, AUDIT,
                             **FAST_GROUP)  # fmt: skip
    await consumer.start()
    task = asyncio.create_task(run_archiver(consumer, archiver, retry_s=(0.05, 0.2)))
    try:
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(done):
            assert not task.done(), task.exception()
            assert time.monotonic() < deadline, f"archive incomplete after {timeout} s: {archiver.stats}"
            await asyncio.sleep(0.1)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await consumer.stop()


def test_archiver_on_s3_copies_references_quarantines_and_is_idempotent(
    seaweed: SeaweedS3, clip: Clip, tmp_path: Path
) -> None:
    archive = seaweed.store(f"archive-{uuid.uuid4().hex[:8]}")
    claims = LocalObjectStore(tmp_path / "ingest-claims")
    chunks = _clip_chunks(clip, 45)  # 3 chunks of ~170 kB
    limit = sorted(len(c.data) for c in chunks)[1]  # the largest chunk(s) go by claim check
    meet = "spring-open"
    copied = CameraId(meet, "platform-1", "side")  # claims in the ingest's own folder: copied in
    shared = CameraId(meet, "platform-1", "front")  # claims written straight into the archive: referenced

    async def produce(bootstrap: str) -> None:
        await ensure_topics(bootstrap, ALL_TOPICS)
        producer = make_producer(bootstrap)
        await producer.start()
        try:
            for camera, store in ((copied, claims), (shared, archive)):
                sink = ChunkSink(
                    producer, camera, store, start_us=chunks[0].capture_us[0], inline_limit=limit
                )
                for chunk in chunks:
                    await sink.send(chunk)
                await sink.end()
            await producer.send_and_wait(VIDEO_CHUNKS, b"\x00\x00\x00\x05{oops", key=b"x/y/z")
            decision = DecisionMsg(attempt_id=f"{meet}/platform-1/side/1/1", meet=meet, platform="platform-1",
                                   camera="side", attempt={"rep": 1}, decided_us=1)  # fmt: skip
            await producer.send_and_wait(DECISIONS, decision.dump(), key=f"{meet}/platform-1".encode())
            await producer.send_and_wait(
                AUDIT, json.dumps({"id": 1, "actor": "jury", "action": "appeal"}).encode(), key=meet.encode()
            )
            await producer.send_and_wait(AUDIT, b"not json", key=meet.encode())
        finally:
            await producer.stop()

    with TansuBroker(tmp_path / "broker") as broker:
        asyncio.run(produce(broker.bootstrap))
        archiver = Archiver(archive, claims)
        n_keys = 2 * 2 * len(chunks) + 2 + 2 + 2  # .ts+.json per chunk, 2 markers, 2 logs, 2 quarantined
        t0 = time.perf_counter()
        asyncio.run(
            _archive_until(broker.bootstrap, archiver, "arch-1", lambda: len(archive.list()) >= n_keys)
        )
        first_pass = {k: archive.get(archive.ref(k)) for k in archive.list()}
        print(f"\narchived to SeaweedFS in {time.perf_counter() - t0:.2f} s: {archiver.stats.as_dict()}")
        assert archiver.stats.copied_from_claims >= 1 and archiver.stats.referenced >= 1
        assert archiver.stats.quarantined == 2

        # A second consumer group re-reads everything: same keys, same bytes, no duplicated lines.
        again = Archiver(archive, claims)
        every = 2 * (len(chunks) + 1)

        def again_done() -> bool:
            st = again.stats
            return st.quarantined >= 2 and st.log_lines >= 2 and st.chunks + st.end_markers >= every

        asyncio.run(_archive_until(broker.bootstrap, again, "arch-2", again_done))
        assert {k: archive.get(archive.ref(k)) for k in archive.list()} == first_pass

    start = chunks[0].capture_us[0]
    for camera in (copied, shared):
        for i, chunk in enumerate(chunks):
            stem = f"{camera.key}/{start}/{i:08d}"
            assert first_pass[f"{stem}.ts"] == chunk.data  # byte-identical, inline or by claim
            assert ChunkMeta.parse(first_pass[f"{stem}.json"]).capture_us == chunk.capture_us
        assert ChunkMeta.parse(first_pass[f"{camera.key}/{start}/{len(chunks):08d}.json"]).end_of_stream
    assert [e["value"]["attempt_id"] for e in read_log(archive, meet, DECISIONS)] == [
        f"{meet}/platform-1/side/1/1"
    ]
    assert [e["value"]["action"] for e in read_log(archive, meet, AUDIT)] == ["appeal"]
    assert sorted(k.split("/")[1] for k in first_pass if k.startswith("_quarantine/")) == [
        AUDIT,
        VIDEO_CHUNKS,
    ]


class FlakyStore(LocalObjectStore):
    """Refuses the first ``failures`` writes, as a store that is briefly down does."""

    def __init__(self, root: Path, failures: int) -> None:
        super().__init__(root)
        self.failures = failures

    def put(self, key: str, data: bytes) -> str:
        if self.failures > 0:
            self.failures -= 1
            raise ObjectStoreError("store briefly down")
        return super().put(key, data)


def test_archiver_retries_a_batch_the_store_refused(clip: Clip, tmp_path: Path) -> None:
    store = FlakyStore(tmp_path / "archive", failures=3)
    chunks = _clip_chunks(clip, 30)
    camera = CameraId("m", "p", "c")

    async def produce(bootstrap: str) -> None:
        await ensure_topics(bootstrap, ALL_TOPICS)
        producer = make_producer(bootstrap)
        await producer.start()
        try:
            sink = ChunkSink(producer, camera, store, start_us=0)
            for chunk in chunks:
                await sink.send(chunk)
            await sink.end()
        finally:
            await producer.stop()

    with TansuBroker(tmp_path / "broker") as broker:
        asyncio.run(produce(broker.bootstrap))
        archiver = Archiver(store, write_threads=1)
        asyncio.run(_archive_until(broker.bootstrap, archiver, "arch", lambda: len(store.list("m/")) >= 5))
    assert store.failures == 0
    assert [store.get(store.ref(f"m/p/c/0/{i:08d}.ts")) for i in range(2)] == [c.data for c in chunks]


@dataclass
class FakeRecord:
    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None
    timestamp: int = 0


def test_claim_refs_the_archiver_cannot_read_are_quarantined_not_retried(clip: Clip, tmp_path: Path) -> None:
    archive = LocalObjectStore(tmp_path / "archive")
    claims = LocalObjectStore(tmp_path / "claims")
    chunk = _clip_chunks(clip, 15)[0]
    base: dict[str, Any] = {
        "meet": "m",
        "platform": "p",
        "camera": "c",
        "stream_start_us": 0,
        "size": len(chunk.data),
    }
    gone = ChunkMeta(**base, seq=0, capture_us=chunk.capture_us, ref=claims.ref("m/p/c/0/gone.ts"))
    foreign = ChunkMeta(**base, seq=1, capture_us=chunk.capture_us, ref=(tmp_path / "secret").as_uri())
    (tmp_path / "secret").write_bytes(b"x" * len(chunk.data))
    unsafe = ChunkMeta(**{**base, "meet": ".."}, seq=2, capture_us=chunk.capture_us)
    records = [
        FakeRecord(VIDEO_CHUNKS, 0, i, pack_chunk(meta, b"" if meta.ref else chunk.data))
        for i, meta in enumerate((gone, foreign, unsafe))
    ]
    archiver = Archiver(archive, claims)
    archiver.write_batch(records)  # no exception: nothing here is worth retrying
    assert archiver.stats.quarantined == 3 and archiver.stats.chunks == 0
    assert archive.list() == [f"_quarantine/{VIDEO_CHUNKS}/0000-{i:012d}.bin" for i in range(3)]


def test_replay_paces_and_interleaves_cameras_by_capture_time(clip: Clip, tmp_path: Path) -> None:
    """Two cameras started 250 ms apart: replay sends their chunks in capture order (each when its last
    frame was captured, at ``speed`` × real time), each stream's end marker right after its last chunk."""
    chunks = _clip_chunks(clip, 45)  # 3 chunks of 0.5 s
    archive = LocalObjectStore(tmp_path / "archive")
    records = []
    for cam, start in (("side", 1_000_000), ("front", 1_250_000)):
        for seq, chunk in enumerate([*chunks, None]):
            meta = ChunkMeta(meet="m", platform="p", camera=cam, stream_start_us=start, seq=seq,
                             end_of_stream=chunk is None)  # fmt: skip
            if chunk is not None:
                capture = [start + p for p in chunk.pts_us]
                meta = meta.model_copy(
                    update={"capture_us": capture, "pts_us": chunk.pts_us, "size": len(chunk.data)}
                )
            records.append(
                FakeRecord(VIDEO_CHUNKS, 0, len(records), pack_chunk(meta, chunk.data if chunk else b""))
            )
    Archiver(archive).write_batch(records)

    async def replay(bootstrap: str, speed: float) -> tuple[ReplayStats, list[tuple[str, int, bool]]]:
        # One partition, so reading the topic back shows the order replay produced in (in production
        # video.chunks is split by camera, and only each camera's own order is kept).
        await ensure_topics(bootstrap, ALL_TOPICS, partitions=1)
        producer = make_producer(bootstrap)
        await producer.start()
        try:
            stats = await replay_meet(producer, archive, "m", speed=speed)
        finally:
            await producer.stop()
        got = (await read_topics(bootstrap, VIDEO_CHUNKS, quiet_s=0.5))[VIDEO_CHUNKS]
        return stats, [
            (m.camera, m.seq, m.end_of_stream) for m, _ in map(lambda r: unpack_chunk(r.value), got)
        ]

    with TansuBroker(tmp_path / "broker") as broker:
        stats, order = asyncio.run(replay(broker.bootstrap, speed=4.0))
    side = [("side", i, False) for i in range(3)] + [("side", 3, True)]
    front = [("front", i, False) for i in range(3)] + [("front", 3, True)]
    assert order == [side[0], front[0], side[1], front[1], side[2], side[3], front[2], front[3]]
    # The last chunk is due 1.75 s of capture time after the first frame: 0.44 s at 4x.
    assert stats.chunks == 6 and stats.end_markers == 2
    assert 0.4 < stats.elapsed_s < 1.5, stats.elapsed_s
