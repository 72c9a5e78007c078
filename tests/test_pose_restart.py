"""A pose worker that takes a stream over mid-way (it was restarted, or the partition moved to it).

Found by the chaos test: a pose worker (and the referee) killed 0.13 s after the bundled clip's second
bottom turned that rep's call from "good" into "undecided". The successor's fresh tracker saw only the
ascent, took its first frame for the bottom and re-measured the wrong frames. Now the successor first
replays the stream's last seconds from ``video.chunks`` (gpu_service.history) without sending them.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from gpu_service.history import WARMUP_S, ChunkHistory
from gpu_service.worker import PoseWorker, shared_tracker_factory
from ingest.chunker import Chunk
from ingest.normalize import chunks_from_file
from meetvar.cli import bundled_clip
from referee.keypoints import PoseFrame
from stream_processors.kafka import ensure_topics, make_consumer, make_producer
from stream_processors.object_store import LocalObjectStore
from stream_processors.referee_processor import RefereeProcessor
from stream_processors.schemas import ChunkMeta, PoseMsg, pack_chunk
from tests.synthetic import squat_session
from tests.test_attempt_ids import START_US, pose_msgs, run

KEY = "m/p/a"


def chunk_meta(
    chunk: Chunk, first_frame_index: int, start_us: int = START_US, camera: str = "a"
) -> ChunkMeta:
    return ChunkMeta(
        meet="m", platform="p", camera=camera, stream_start_us=start_us, seq=chunk.seq,
        capture_us=[start_us + t for t in chunk.capture_us], pts_us=chunk.pts_us,
        first_frame_index=first_frame_index, width=chunk.width, height=chunk.height, size=len(chunk.data),
    )  # fmt: skip


@pytest.fixture(scope="module")
def clip() -> list[tuple[ChunkMeta, bytes]]:
    chunks = list(chunks_from_file(bundled_clip()))
    out, index = [], 0
    for c in chunks:
        out.append((chunk_meta(c, index), c.data))
        index += len(c.capture_us)
    return out


def calls(msgs: list[PoseMsg]) -> list[tuple[float, str]]:
    processor = RefereeProcessor()
    return [
        (float(d.attempt["bottom_s"]), str(d.attempt["verdict"]))
        for m in msgs
        for d, _ in processor.handle(m)
    ]


def test_a_worker_restarted_just_after_a_bottom_still_re_measures_it(
    clip: list[tuple[ChunkMeta, bytes]], tmp_path: Path
) -> None:
    """The first worker dies after sending the chunk that holds rep 2's bottom (17.35 s), before the
    bottom's re-measure was due; the second takes over at the next chunk."""
    factory = shared_tracker_factory()
    store = LocalObjectStore(tmp_path)
    first = PoseWorker(store, factory)
    per_chunk = [first.poses_for_chunk(KEY, meta, data) for meta, data in clip]
    reference = calls([m for msgs in per_chunk for m in msgs])
    assert [v for _, v in reference] == ["good", "good"]
    bottom_us = START_US + round(reference[1][0] * 1e6)
    takeover = next(i for i, (meta, _) in enumerate(clip) if meta.capture_us[0] > bottom_us)
    # The re-measure is due 0.3 s after the bottom: still inside the chunk taken over at.
    assert clip[takeover][0].capture_us[-1] > bottom_us + 300_000
    before = [m for msgs in per_chunk[:takeover] for m in msgs]
    assert calls(before) == reference[:1]

    second = PoseWorker(store, factory)
    assert second.needs_history(KEY, clip[takeover][0])
    history = [
        c for c in clip[:takeover] if c[0].capture_us[-1] >= clip[takeover][0].capture_us[0] - WARMUP_S * 1e6
    ]
    assert second.warm_up(KEY, history) >= WARMUP_S * 29
    assert not second.needs_history(KEY, clip[takeover][0])  # the track goes on into it
    after = [m for meta, data in clip[takeover:] for m in second.poses_for_chunk(KEY, meta, data)]
    got = calls(before + after)
    assert [v for _, v in got] == ["good", "good"], got
    assert abs(got[1][0] - reference[1][0]) < 0.1, (got, reference)


def test_a_repeated_frame_still_delivers_the_re_measured_bottom_it_carries() -> None:
    """A successor redoing a chunk sends frames the referee has seen; the re-measured bottom riding on
    one of them (its own watch may pick another frame to carry it than its predecessor) is used."""
    msgs = pose_msgs(squat_session([1.25], start_us=START_US))
    frames = [PoseFrame.from_json(m.frame) for m in msgs if m.frame is not None]
    bottom = max(range(len(frames)), key=lambda i: frames[i].keypoints[23, 1])  # type: ignore[index]
    refined = tuple(
        PoseFrame.from_json({**f.to_json(), "extras": {"refined": 4.0}})
        for f in frames[bottom - 9 : bottom + 10]
    )
    carrier = bottom + 12
    plain = run(RefereeProcessor(), msgs)
    assert plain[0].attempt["depth"]["measured"] == "tracker poses"
    again = msgs[carrier].model_copy(
        update={"frame": {**frames[carrier].to_json(), "refined": [r.to_json() for r in refined]}}
    )
    redone = run(RefereeProcessor(), [*msgs[: carrier + 3], again, *msgs[carrier + 3 :]])
    assert redone[0].attempt["depth"]["measured"] == f"crop ensemble, {len(refined)} bottom frames"
    assert redone[0].attempt["verdict"] == plain[0].attempt["verdict"] == "good"


def _fake_chunk(meta: ChunkMeta) -> bytes:
    return pack_chunk(meta.model_copy(update={"size": 3}), b"abc")


@pytest.mark.integration
def test_history_reads_back_the_streams_own_chunks_without_a_gap(broker: Any) -> None:
    """Interleaved with two other cameras and an older stream of the same camera, over more records
    than the first look back; a missing chunk ends the chain."""
    topic = f"chunks-{uuid.uuid4().hex[:8]}"
    frames = 15

    def meta(camera: str, k: int, start_us: int = START_US) -> ChunkMeta:
        times = [round((k * frames + i) * 1e6 / 30) for i in range(frames)]
        return ChunkMeta(
            meet="m", platform="p", camera=camera, stream_start_us=start_us, seq=k,
            capture_us=[start_us + t for t in times], pts_us=times, first_frame_index=k * frames, size=3,
        )  # fmt: skip

    records: list[tuple[str, ChunkMeta]] = [(KEY, meta("a", k, START_US - 10**9)) for k in range(6)]
    for k in range(12):
        records += [("m/p/b", meta("b", k)), ("m/p/c", meta("c", k))]
        if k != 3:  # chunk 3 of camera a never arrived
            records.append((KEY, meta("a", k)))

    async def go() -> tuple[list[ChunkMeta], list[ChunkMeta]]:
        await ensure_topics(broker.bootstrap, [topic], partitions=1)
        producer = make_producer(broker.bootstrap)
        await producer.start()
        offsets = {}
        try:
            for key, m in records:
                sent = await producer.send_and_wait(topic, _fake_chunk(m), key=key.encode())
                offsets[(key, m.stream_start_us, m.seq)] = sent.offset
        finally:
            await producer.stop()
        reader = make_consumer(broker.bootstrap, None)
        await reader.start()
        try:
            history = ChunkHistory(reader)
            tp = TopicPartition(topic, 0)
            at_11 = await history.before(tp, offsets[(KEY, START_US, 11)], KEY, meta("a", 11))
            at_6 = await history.before(tp, offsets[(KEY, START_US, 6)], KEY, meta("a", 6))
            # A partition that cannot be read (here: none such) gives no history, not a crashed worker.
            lost = TopicPartition(f"no-such-{uuid.uuid4().hex[:8]}", 0)
            assert await ChunkHistory(reader, timeout_s=2.0).before(lost, 5, KEY, meta("a", 11)) == []
        finally:
            await reader.stop()
        return [m for m, _ in at_11], [m for m, _ in at_6]

    at_11, at_6 = asyncio.run(go())
    # 2 s before chunk 11 (at 5.5 s): chunks 7-10, whole chunks, all camera a's current stream.
    assert [m.seq for m in at_11] == [7, 8, 9, 10]
    assert {(m.camera, m.stream_start_us) for m in at_11} == {("a", START_US)}
    # Before chunk 6 the chain stops at the missing chunk 3.
    assert [m.seq for m in at_6] == [4, 5]
