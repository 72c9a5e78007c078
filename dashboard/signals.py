"""The head referee's "Squat" and "Rack" signals, from the tablet onto ``meet.state``.

Why through the broker: the referee processes read ``meet.state`` (``command``) to know when the
Squat signal was given (a descent before it earns the missed-signal card) and when the bar was
racked; the dashboard gets the signal back on its own feed like any other state. A dashboard without
a broker (tests, a laptop without meet software) applies the signal to itself directly.

A signal names no lifter: ``MeetTimeline`` leaves command-only messages out of attempt naming, so a
signal can never end or rename the attempt on the platform (the dashboard merges it into the
platform's shown state instead, :func:`merge_state`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

import structlog
from sqlalchemy import select

from dashboard import db
from dashboard.store import StoreError, now_us
from stream_processors.schemas import StateMsg

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer

    from dashboard.auth import User
    from dashboard.state import DashboardState

log = structlog.get_logger()

Signal = Literal["squat", "rack"]
StateSink = Callable[[StateMsg], Awaitable[None]]
SEND_TIMEOUT_S = 5.0

_ATTEMPT_FIELDS = ("lifter", "lift", "attempt_number", "weight_kg")


def signal_message(meet: str, platform: str, signal: Signal, at_us: int | None = None) -> StateMsg:
    """The ``meet.state`` a signal is: the platform, the command and its time (UTC µs, the clock the
    referee compares capture times with), and nothing else."""
    return StateMsg(meet=meet, platform=platform, command=signal, at_us=now_us() if at_us is None else at_us)


def merge_state(previous: dict[str, Any] | None, msg: dict[str, Any]) -> dict[str, Any]:
    """The platform's state after ``msg``: a command-only message keeps the attempt on the platform
    and adds the command; one that names an attempt replaces the state (and clears the last command)."""
    if previous is None or not msg.get("command") or any(msg.get(k) is not None for k in _ATTEMPT_FIELDS):
        return msg
    kept = {k: previous.get(k) for k in _ATTEMPT_FIELDS}
    return {**msg, **{k: v for k, v in kept.items() if v is not None}}


class StatePublisher:
    """Produces to ``meet.state`` keyed ``meet/platform`` (the key the referee partitions by). The
    producer starts on the first signal and is rebuilt after an error, so a broker that was down when
    the dashboard started does not need a restart."""

    def __init__(self, bootstrap: str, topic: str | None = None) -> None:
        from stream_processors.topics import MEET_STATE

        self.bootstrap = bootstrap
        self.topic = topic or MEET_STATE
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def send(self, msg: StateMsg) -> None:
        from stream_processors.kafka import make_producer
        from stream_processors.topics import platform_key

        async with self._lock:
            try:
                if self._producer is None:
                    producer = make_producer(self.bootstrap)
                    await asyncio.wait_for(producer.start(), SEND_TIMEOUT_S)
                    self._producer = producer
                key = platform_key(msg.meet, msg.platform).encode()
                await asyncio.wait_for(
                    self._producer.send_and_wait(self.topic, msg.dump(), key=key), SEND_TIMEOUT_S
                )
            except Exception as exc:
                await self.close()
                raise StoreError(
                    f"the signal did not reach the broker at {self.bootstrap}: {exc}", 503
                ) from exc

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()


Feed = Callable[["DashboardState"], Awaitable[None]]


def with_state_publisher(feed: Feed, publisher: StatePublisher) -> Feed:
    """The dashboard's feed, with signals going out through ``publisher`` while it runs."""

    async def both(state: DashboardState) -> None:
        state.state_sink = publisher.send
        try:
            await feed(state)
        finally:
            state.state_sink = None
            await publisher.close()

    return both


async def send_signal(
    state: DashboardState, user: User, meet: str, platform: str, signal: Signal
) -> dict[str, Any]:
    """Publish the head referee's signal and record it in the audit log."""
    with state.store.engine.connect() as conn:
        known = conn.execute(
            select(db.platforms.c.name).where(db.platforms.c.meet == meet, db.platforms.c.name == platform)
        ).first()
    if known is None:
        raise StoreError(f"no platform {meet}/{platform}", 404)
    msg = signal_message(meet, platform, signal)
    sink = state.state_sink
    if sink is not None:
        await sink(msg)  # comes back on the feed's meet.state, like the meet software's states
        via = "meet.state"
    else:
        state.on_state(msg.model_dump(mode="json"))
        via = "this dashboard (no broker)"
    state.record(
        user, "signal", f"{meet}/{platform}", {"meet": meet, "signal": signal, "at_us": msg.at_us, "via": via}
    )
    log.info("dashboard.signal", meet=meet, platform=platform, signal=signal, via=via)
    return {"meet": meet, "platform": platform, "command": signal, "at_us": msg.at_us, "via": via}
