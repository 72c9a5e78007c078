"""Claim checks through S3: ingest on one machine, the pose worker on the GPU box, no shared disk.

The publisher (the one place every ingest path sends chunks through) puts a chunk above the inline limit
into a real S3 API (SeaweedFS, which checks signatures), and the pose worker — given only the store URL
and credentials from the environment, as in deploy/ — fetches it by its ref and makes poses of it.
"""

from __future__ import annotations

import argparse
import uuid
from typing import Any

import pytest

from gpu_service.worker import PoseWorker, shared_tracker_factory
from ingest.normalize import chunks_from_file
from ingest.publisher import CameraId, ChunkSink
from meetvar.cli import build_parser, bundled_clip
from meetvar.errors import UserError
from meetvar.services import open_store
from stream_processors.object_store import LocalObjectStore, S3ObjectStore
from stream_processors.schemas import ChunkMeta, unpack_chunk
from stream_processors.topics import VIDEO_CHUNKS
from tests.conftest import SeaweedS3


class CapturingProducer:
    """Stands in for the Kafka producer: keeps what would have gone to the broker."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None]] = []

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self.sent.append((topic, value, key))


def _s3_env(seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in seaweed.env.items():
        monkeypatch.setenv(name, value)


async def test_chunk_above_inline_limit_travels_through_s3_to_the_pose_worker(
    seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    _s3_env(seaweed, monkeypatch)
    url = seaweed.url(f"claims-{uuid.uuid4().hex[:8]}")
    camera = CameraId.parse("open2026/platform-1/side")
    # Ingest's side: the writer creates the bucket itself (a fresh venue needs no manual step).
    ingest_store = open_store(url, writer=True)
    assert isinstance(ingest_store, S3ObjectStore)
    producer = CapturingProducer()
    sink = ChunkSink(producer, camera, ingest_store, start_us=1_700_000_000_000_000, inline_limit=10_000)  # type: ignore[arg-type]
    chunk = next(iter(chunks_from_file(bundled_clip(), start_us=sink.start_us, max_frames=12)))
    assert len(chunk.data) > 10_000
    sent = await sink.send(chunk)
    assert sent.ref is not None and sent.ref.startswith(
        f"s3://{ingest_store.bucket}/open2026/platform-1/side/"
    )

    topic, value, key = producer.sent[0]
    assert topic == VIDEO_CHUNKS and key == camera.key.encode()
    meta, inline = unpack_chunk(value)
    assert inline == b"" and meta.ref == sent.ref and meta.size == len(chunk.data)

    # The GPU box's side: a store of its own from the same URL (another process, another machine).
    worker_store = open_store(url, writer=False)
    assert worker_store is not ingest_store
    assert worker_store.get(meta.ref) == chunk.data
    worker = PoseWorker(worker_store, shared_tracker_factory("onnxruntime", threads=1, skip_still=False))
    poses = worker.poses_for_chunk(camera.key, meta, inline)
    assert len(poses) == len(meta.capture_us)
    assert [p.frame["capture_us"] for p in poses if p.frame] == meta.capture_us


async def test_missing_claim_in_s3_loses_only_that_chunk(
    seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    _s3_env(seaweed, monkeypatch)
    store = open_store(seaweed.url(f"claims-{uuid.uuid4().hex[:8]}"), writer=True)
    meta = ChunkMeta(
        meet="m",
        platform="p",
        camera="c",
        stream_start_us=1,
        seq=0,
        first_frame_index=0,
        capture_us=[1, 2],
        pts_us=[0, 33_333],
        codec="h264",
        size=20_000,
        ref=store.ref("m/p/c/1/00000000.ts"),
    )
    worker = PoseWorker(store, shared_tracker_factory("onnxruntime", threads=1))
    [result] = worker.poses_for_chunks([("m/p/c", meta, b"")])
    assert isinstance(result, Exception) and "missing" in str(result)


def test_open_store_errors_are_one_line(tmp_path: Any) -> None:
    assert isinstance(open_store(tmp_path / "objects", writer=True), LocalObjectStore)
    with pytest.raises(UserError, match="unsupported store URL"):
        open_store("ftp://nope", writer=False)


def _parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def test_services_accept_s3_store_flags() -> None:
    s3 = "s3://meetvar/claims?endpoint=http://seaweedfs:8333"
    for argv in (
        ["ingest", "clip.mp4", "--broker", "k:9092", "--store", s3],
        ["pose-worker", "--broker", "k:9092", "--store", s3],
        ["replay", "--meet", "m", "--broker", "k:9092", "--store", s3],
        ["archiver", "--broker", "k:9092", "--store", s3],
        ["camera", "rtsp://cam/1", "--camera", "m/p/c", "--broker", "k:9092", "--store", s3],
        ["dashboard", "--broker", "k:9092", "--db", "x.sqlite", "--store", s3],
    ):
        assert _parse(argv).store == s3
