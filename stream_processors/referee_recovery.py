"""Crash recovery of the referee: rebuild, before consuming, what a crashed referee held in memory.

The referee keeps its state in memory (faust's memory store, as Tansu requires), and its consumer group
resumes ``poses`` at the committed offset. On its own that would lose an attempt in progress at the
crash: the frames of its descent are behind the committed offset. So before the faust worker starts:

1. **What was emitted**: the whole ``decisions`` topic is read into the processor's
   :class:`~stream_processors.attempts.AttemptLedger` (a meet has hundreds of decisions, not more), so
   no attempt is emitted twice and each camera skips the frames up to its last emitted lockout.
2. **Who was lifting**: the whole ``meet.state`` topic is read into the processor's timeline (names
   only; old referee commands are not replayed into the referees), so ids name the meet's attempts.
3. **The frames before the committed offset**: each ``poses`` partition is rewound to the first frame
   captured :data:`REWIND_S` before the last committed one and replayed up to the committed offset,
   rebuilding each camera's segmenter. Tansu's ``offsets_for_times`` answers offset 0 for every time
   (measured), so the rewind point is found by a binary search over the partition's capture times.
   An attempt whose decision was never emitted (its frames were committed but the send was lost) is
   emitted now; one already emitted is not emitted again.

Then faust resumes at the committed offset with this processor, and frames it redelivers past that
offset are recognised (dropped, or judged into an attempt the ledger already has). 0 lost, 0 doubled.

A replayed window that does not reach back to an attempt's start (an attempt longer than
:data:`REWIND_S`) still gets judged, and its reasons say the referee restarted during it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream_processors.kafka import make_consumer, make_producer, read_range
from stream_processors.referee_processor import RefereeProcessor
from stream_processors.schemas import DecisionMsg, PoseMsg, SchemaError, StateMsg
from stream_processors.topics import DECISIONS, MEET_STATE, POSES, platform_key

log = structlog.get_logger()

#: How far before the last committed frame the referee rebuilds from: longer than any attempt
#: (knees unlock to lockout and the hold after it), short enough to replay in a second or two.
REWIND_S = 60.0


class RecoveryError(RuntimeError):
    """The broker did not give back what recovery needs in time."""


@dataclass(frozen=True, slots=True)
class RefereeTopics:
    """Topic names; tests on a shared broker pass their own."""

    poses: str = POSES
    decisions: str = DECISIONS
    state: str = MEET_STATE


@dataclass
class RecoveryReport:
    decisions_read: int = 0
    states_read: int = 0
    poses_replayed: int = 0
    rewound: dict[int, tuple[int, int]] = field(default_factory=dict)  # partition: (from, committed)
    emitted: list[DecisionMsg] = field(default_factory=list)  # found in the replay, never emitted before
    suppressed: int = 0  # judged again in the replay, already emitted
    seconds: float = 0.0


async def recover(
    bootstrap: str,
    group_id: str,
    processor: RefereeProcessor,
    *,
    topics: RefereeTopics | None = None,
    window_s: float = REWIND_S,
    timeout_s: float = 60.0,
) -> RecoveryReport:
    """Fill ``processor`` as the crashed referee of ``group_id`` left it; emit what it never did.

    Reads the group's committed offsets without joining the group (assignment only), so it neither
    waits for a rebalance nor disturbs one.
    """
    t = topics or RefereeTopics()
    report = RecoveryReport()
    started = time.monotonic()
    deadline = started + timeout_s
    consumer = make_consumer(bootstrap, group_id)
    probe = make_consumer(bootstrap, None, max_partition_fetch_bytes=256 * 1024, fetch_max_bytes=1 << 20)
    producer = make_producer(bootstrap)
    await consumer.start()
    await probe.start()
    await producer.start()
    try:
        for record in await _read_topic(consumer, t.decisions, deadline):
            try:
                processor.ledger.record(DecisionMsg.parse(record.value or b""))
                report.decisions_read += 1
            except SchemaError as exc:
                log.error("referee.recovery_bad_decision", error=str(exc))
        for record in await _read_topic(consumer, t.state, deadline):
            try:
                processor.timeline.note(StateMsg.parse(record.value or b""))
                report.states_read += 1
            except SchemaError as exc:
                log.error("referee.recovery_bad_state", error=str(exc))
        suppressed_before = processor.suppressed
        for tp in await _partitions(consumer, t.poses):
            committed = await consumer.committed(tp)
            if not committed:
                continue  # a new group: faust reads from the start, nothing to rebuild
            start = await _rewind_offset(probe, tp, committed, int(window_s * 1e6), deadline)
            report.rewound[tp.partition] = (start, committed)
            for record in await read_range(consumer, tp, start, committed, deadline):
                try:
                    msg = PoseMsg.parse(record.value or b"")
                except SchemaError:
                    continue
                report.poses_replayed += 1
                for decision, _ in processor.handle(msg):
                    await _emit(producer, t.decisions, decision)
                    report.emitted.append(decision)
        report.suppressed = processor.suppressed - suppressed_before
    finally:
        await producer.stop()
        await probe.stop()
        await consumer.stop()
    report.seconds = round(time.monotonic() - started, 3)
    log.info(
        "referee.recovered",
        decisions_read=report.decisions_read,
        states_read=report.states_read,
        poses_replayed=report.poses_replayed,
        rewound=report.rewound,
        emitted=[d.attempt_id for d in report.emitted],
        suppressed=report.suppressed,
        seconds=report.seconds,
    )
    return report


async def _emit(producer: AIOKafkaProducer, topic: str, decision: DecisionMsg) -> None:
    key = platform_key(decision.meet, decision.platform).encode()
    await producer.send_and_wait(topic, decision.dump(), key=key)


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    # The whole cluster's metadata: once assigned, a consumer keeps only its assigned topics' metadata.
    cluster = await consumer._client.fetch_all_metadata()
    return [TopicPartition(topic, p) for p in sorted(cluster.partitions_for_topic(topic) or ())]


async def _read_topic(consumer: AIOKafkaConsumer, topic: str, deadline: float) -> list[Any]:
    out: list[Any] = []
    for tp in await _partitions(consumer, topic):
        begin = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        out += await read_range(consumer, tp, begin, end, deadline, to_highwater=True)
    return out


async def _capture_at(
    probe: AIOKafkaConsumer, tp: TopicPartition, offset: int, deadline: float
) -> int | None:
    """Capture time (µs) of the first frame at or after ``offset`` (a frameless record: its timestamp)."""
    probe.assign([tp])
    probe.seek(tp, offset)
    stamp: int | None = None
    while time.monotonic() < deadline:
        batch = await probe.getmany(tp, timeout_ms=500, max_records=16)
        records = batch.get(tp, [])
        if not records:
            return stamp
        for record in records:
            try:
                msg = PoseMsg.parse(record.value or b"")
            except SchemaError:
                continue
            if msg.frame is not None and int(msg.frame.get("capture_us", -1)) >= 0:
                return int(msg.frame["capture_us"])
            if stamp is None:
                stamp = int(record.timestamp) * 1000
    raise RecoveryError(f"could not read {tp.topic}[{tp.partition}] at {offset} in time")


async def _rewind_offset(
    probe: AIOKafkaConsumer, tp: TopicPartition, committed: int, window_us: int, deadline: float
) -> int:
    """The first offset whose frame was captured at most ``window_us`` before the last committed one.
    Capture times rise with the offset up to a little jitter between cameras, which the window covers."""
    begin = (await probe.beginning_offsets([tp]))[tp]
    last = await _capture_at(probe, tp, committed - 1, deadline)
    if last is None:
        return begin
    target = last - window_us
    lo, hi = begin, committed - 1  # the answer lies in [lo, hi]
    while lo < hi:
        mid = (lo + hi) // 2
        at = await _capture_at(probe, tp, mid, deadline)
        if at is None or at >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo
