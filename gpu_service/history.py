"""The chunks of a stream just before the one a pose worker takes over at.

A pose worker that starts a camera's track mid-stream (it was restarted, or the camera's partition
came to it from another worker) has not seen the frames before its first chunk. Two things are lost
with them: the tracker's crop history, and the bottom of a squat that was reached just before. The
bottom is re-measured only ``RefineSettings.window_s`` after it (gpu_service.refine); if the worker that
saw it died before that, a fresh tracker watching only the ascent takes its first frame for the
bottom, re-measures the wrong frames, and the referee judges depth on them (seen: a kill 0.13 s after
rep 2's bottom turned its call "undecided"). So before its first chunk, the worker replays the last
:data:`WARMUP_S` of the stream from ``video.chunks`` through the new tracker, sending nothing
from it (those frames' poses were already sent), and carries on with the track and the dip it rebuilt.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from stream_processors.kafka import PartitionReadTimeout, read_range
from stream_processors.schemas import ChunkMeta, SchemaError, unpack_chunk

log = structlog.get_logger()

#: Seconds of a stream replayed before a track started mid-stream: the refine window either side of
#: a bottom reached just before (0.6 s), plus time for the tracker's crop filter and the thigh length
#: the dip is measured in to settle. Costs about a second of pose on one CPU thread, once per restart.
WARMUP_S = 2.0

#: Records read back at first; doubled while the stream's chunks do not reach back far enough (other
#: cameras' chunks share the partition), up to :data:`MAX_LOOKBACK`.
FIRST_LOOKBACK = 16
MAX_LOOKBACK = 512


@dataclass
class ChunkHistory:
    """Reads back a partition of ``video.chunks`` with its own groupless consumer."""

    consumer: AIOKafkaConsumer
    seconds: float = WARMUP_S
    timeout_s: float = 10.0

    async def before(
        self, tp: TopicPartition, offset: int, key: str, meta: ChunkMeta
    ) -> list[tuple[ChunkMeta, bytes]]:
        """The chunks of ``meta``'s stream that lead up to it without a gap, oldest first, covering
        :attr:`seconds` before its first frame (less where the stream or the partition is younger).

        Empty when they cannot be read in time or the broker fails meanwhile: the worker then starts
        the track cold, as before, rather than fail (its successor would need the same history).
        """
        if meta.first_capture_us is None or meta.first_frame_index <= 0:
            return []
        try:
            return await asyncio.wait_for(self._read_back(tp, offset, key, meta), self.timeout_s)
        except (PartitionReadTimeout, TimeoutError, KafkaError) as exc:
            log.warning("pose.history_unread", key=key, offset=offset, error=str(exc) or type(exc).__name__)
            return []

    async def _read_back(
        self, tp: TopicPartition, offset: int, key: str, meta: ChunkMeta
    ) -> list[tuple[ChunkMeta, bytes]]:
        first_us = int(meta.capture_us[0])
        deadline = time.monotonic() + self.timeout_s
        found: dict[int, tuple[ChunkMeta, bytes]] = {}  # first frame index → chunk
        begin = (await self.consumer.beginning_offsets([tp]))[tp]
        upto, step = offset, FIRST_LOOKBACK
        chain: list[tuple[ChunkMeta, bytes]] = []
        while upto > begin and step <= MAX_LOOKBACK:
            start = max(begin, upto - step)
            for record in await read_range(self.consumer, tp, start, upto, deadline):
                if (record.key or b"").decode(errors="replace") != key:
                    continue
                try:
                    m, data = unpack_chunk(record.value or b"")
                except SchemaError:
                    continue
                if m.stream_start_us == meta.stream_start_us and not m.end_of_stream and m.capture_us:
                    found[m.first_frame_index] = (m, data)
            chain = _chain(found, meta.first_frame_index)
            oldest = chain[0][0].first_frame_index if chain else meta.first_frame_index
            if chain and (oldest == 0 or first_us - chain[0][0].capture_us[0] >= self.seconds * 1e6):
                break
            if any(i < oldest for i in found):
                break  # a chunk of the stream older than the chain: the gap before it is for good
            upto, step = start, step * 2
        cut = first_us - int(self.seconds * 1e6)
        # Whole chunks only (each decodes on its own): the oldest one that still reaches the cut.
        while len(chain) > 1 and chain[1][0].capture_us[0] <= cut:
            chain.pop(0)
        return chain


def _chain(found: dict[int, tuple[ChunkMeta, bytes]], target: int) -> list[tuple[ChunkMeta, bytes]]:
    """The chunks that end exactly where ``target`` begins, back to the first missing one."""
    by_end = {i + len(m.capture_us): (m, d) for i, (m, d) in found.items()}
    chain: list[tuple[ChunkMeta, bytes]] = []
    at = target
    while at in by_end:
        chain.append(by_end[at])
        at = by_end[at][0].first_frame_index
    return chain[::-1]
