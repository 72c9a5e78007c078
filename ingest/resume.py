"""Resume a file camera's stream after a crash: from the chunk after the last one the broker holds.

A file ingest killed mid-stream (kill -9, a crash when the broker was gone too long) used to start a
new stream on restart: the attempt in progress lost its second half, and every rep already streamed
came again under a new stream start — different capture times, so different attempt ids (doubled).

Instead, a restarted ``meetvar ingest --resume`` reads the newest record of its camera on
``video.chunks``. When that stream has no end-of-stream marker, it re-chunks the same file under the
same ``stream_start_us`` (the chunker is deterministic: the same frames always give the same chunks,
see :mod:`ingest.chunker`), checks that its chunk ``seq`` has the capture times the broker has, and
sends only the chunks after it. A chunk whose send was in flight at the kill is in the topic or not,
so it is sent exactly once either way. A live camera cannot resume (the frames of its downtime are
gone); this is for recorded sources, the demo's cameras and replays.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from aiokafka import TopicPartition

from stream_processors.kafka import make_consumer, read_range
from stream_processors.schemas import ChunkMeta, SchemaError, unpack_chunk
from stream_processors.topics import VIDEO_CHUNKS

log = structlog.get_logger()

#: Records read back from the end of a partition first; doubled until the camera's newest is found.
_FIRST_WINDOW = 16


async def newest_chunk(bootstrap: str, camera_key: str, *, timeout_s: float = 30.0) -> ChunkMeta | None:
    """The metadata of the newest record of ``camera_key`` on ``video.chunks`` (chunk or end marker),
    None when the camera never streamed.

    Reads backwards from the end of every partition in growing windows (each record holds a chunk of
    video, so reading a whole partition would be slow), without joining any group.
    """
    deadline = time.monotonic() + timeout_s
    consumer = make_consumer(bootstrap, None)
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()
        parts = sorted(cluster.partitions_for_topic(VIDEO_CHUNKS) or ())
        key = camera_key.encode()
        newest: tuple[int, ChunkMeta] | None = None
        for p in parts:
            tp = TopicPartition(VIDEO_CHUNKS, p)
            found = await _newest_in_partition(consumer, tp, key, deadline)
            if found is not None and (newest is None or found[0] > newest[0]):
                newest = found
        return None if newest is None else newest[1]
    finally:
        await consumer.stop()


async def _newest_in_partition(
    consumer: Any, tp: TopicPartition, key: bytes, deadline: float
) -> tuple[int, ChunkMeta] | None:
    """(timestamp, metadata) of the last record with ``key`` in one partition, if any."""
    begin = (await consumer.beginning_offsets([tp]))[tp]
    end = (await consumer.end_offsets([tp]))[tp]
    if end <= begin:
        return None
    window = _FIRST_WINDOW
    stop = end
    while True:
        start = max(begin, stop - window)
        records = await read_range(consumer, tp, start, start, deadline, to_highwater=True)
        # The fetch's high watermark can be past the "latest" Tansu reported: keep all that came back.
        mine = [r for r in records if r.key == key and r.offset >= start]
        for record in sorted(mine, key=lambda r: r.offset, reverse=True):
            try:
                meta, _ = unpack_chunk(record.value or b"")
            except SchemaError:
                continue
            return int(record.timestamp), meta
        if start <= begin:
            return None
        stop, window = start, window * 2


def resumable(meta: ChunkMeta | None) -> ChunkMeta | None:
    """The chunk to resume after, or None for a new stream (none yet, or the last one ended)."""
    if meta is None or meta.end_of_stream or not meta.capture_us:
        return None
    return meta
