"""Feeds the dashboard from Kafka: decisions, explanations and meet state as they are produced, the
poses of each attempt window for the replays, and the audit log out to its topic.

Two consumers, because the ``poses`` topic carries a message per camera frame: behind its own
consumer it can never delay a decision on its way to the judges' screens. Decisions are committed
after they are stored (at-least-once; storing is idempotent per attempt id). Poses only fill an
in-memory ring, so their offsets are committed in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer

from dashboard.state import DashboardState
from meetvar.metrics import BROKER_UP, DECISION_COUNT, ERRORS, observe_pose_lag
from stream_processors.kafka import make_consumer, make_producer
from stream_processors.schemas import DecisionMsg, ExplanationMsg, PoseMsg, SchemaError, StateMsg
from stream_processors.topics import AUDIT, DECISIONS, EXPLANATIONS, MEET_STATE, POSES

log = structlog.get_logger()

Feed = Callable[[DashboardState], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class FeedTopics:
    """Topic names; tests on a shared broker pass their own to stay isolated."""

    decisions: str = DECISIONS
    explanations: str = EXPLANATIONS
    state: str = MEET_STATE
    poses: str = POSES
    audit: str = AUDIT


def kafka_feed(
    bootstrap: str, group_id: str = "meetvar-dashboard", topics: FeedTopics | None = None, poses: bool = True
) -> Feed:
    t = topics or FeedTopics()

    async def feed(state: DashboardState) -> None:
        jobs = [_consume(state, bootstrap, group_id, (t.decisions, t.explanations, t.state), t)]
        if poses:
            jobs.append(_consume(state, bootstrap, f"{group_id}-poses", (t.poses,), t, commit_every_s=2.0))
        await asyncio.gather(*jobs)

    return feed


async def _consume(
    state: DashboardState,
    bootstrap: str,
    group_id: str,
    names: tuple[str, ...],
    t: FeedTopics,
    commit_every_s: float = 0.0,
) -> None:
    while True:
        consumer = make_consumer(bootstrap, group_id, *names)
        try:
            await consumer.start()
            state.feed_error = None
            BROKER_UP.labels(service="dashboard").set(1.0)
            last_commit = time.monotonic()
            async for record in consumer:
                dispatch(state, record.topic, record.value or b"", t)
                if time.monotonic() - last_commit >= commit_every_s:
                    await consumer.commit()
                    last_commit = time.monotonic()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the broker went away: show it, and keep trying
            state.feed_error = f"lost the broker at {bootstrap}: {exc}"
            BROKER_UP.labels(service="dashboard").set(0.0)
            ERRORS.labels(service="dashboard", kind="broker_lost").inc()
            log.error("dashboard.feed_error", error=str(exc))
            await asyncio.sleep(2.0)
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()


def dispatch(state: DashboardState, topic: str, value: bytes, t: FeedTopics | None = None) -> None:
    """One record into the dashboard's ingestion functions; a malformed one is logged and skipped."""
    t = t or FeedTopics()
    try:
        if topic == t.decisions:
            decision = DecisionMsg.parse(value)
            state.on_decision(decision.model_dump(mode="json"))
            if decision.camera != "fused":
                verdict = str(decision.attempt.get("verdict", "undecided"))
                DECISION_COUNT.labels(service="dashboard", verdict=verdict).inc()
        elif topic == t.explanations:
            state.on_explanation(ExplanationMsg.parse(value).model_dump(mode="json"))
        elif topic == t.state:
            state.on_state(StateMsg.parse(value).model_dump(mode="json"))
        elif topic == t.poses:
            pose = PoseMsg.parse(value)
            observe_pose_lag(pose, "dashboard")
            state.on_pose(pose.model_dump(mode="json"))
    except SchemaError as exc:
        log.error("dashboard.bad_message", topic=topic, error=str(exc))
        ERRORS.labels(service="dashboard", kind="bad_message").inc()


class AuditPublisher:
    """Copies audit entries to the ``audit`` topic, keyed by meet. The database is the record; the
    topic is for other consumers, so a broker outage queues entries (bounded) instead of failing a
    human action."""

    def __init__(self, bootstrap: str, topic: str = AUDIT, max_queue: int = 10_000) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(max_queue)
        self._loop: asyncio.AbstractEventLoop | None = None

    def offer(self, entry: dict[str, Any]) -> None:
        """The :class:`AuditLog` sink: callable from the loop or from a worker thread."""
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._put(entry)
        else:
            loop.call_soon_threadsafe(self._put, entry)

    def _put(self, entry: dict[str, Any]) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(entry)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        producer: AIOKafkaProducer | None = None
        try:
            while True:
                entry = await self._queue.get()
                while True:
                    try:
                        if producer is None:
                            producer = make_producer(self.bootstrap)
                            await producer.start()
                        meet = str(entry.get("details", {}).get("meet") or "meetvar")
                        value = json.dumps({"schema_version": 1, **entry}).encode()
                        await producer.send_and_wait(self.topic, value, key=meet.encode())
                        break
                    except Exception as exc:
                        log.warning("dashboard.audit_topic_unavailable", error=str(exc))
                        if producer is not None:
                            with contextlib.suppress(Exception):
                                await producer.stop()
                        producer = None
                        await asyncio.sleep(2.0)
        finally:
            if producer is not None:
                with contextlib.suppress(Exception):
                    await producer.stop()


def with_audit_topic(feed: Feed, publisher: AuditPublisher) -> Feed:
    async def both(state: DashboardState) -> None:
        await asyncio.gather(feed(state), publisher.run())

    return both
