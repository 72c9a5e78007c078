"""Feeds the dashboard from Kafka: decisions, explanations and meet state, as they are produced."""

from __future__ import annotations

import asyncio

import structlog

from dashboard.app import DashboardState, Feed
from stream_processors.kafka import make_consumer
from stream_processors.schemas import DecisionMsg, ExplanationMsg, SchemaError, StateMsg
from stream_processors.topics import DECISIONS, EXPLANATIONS, MEET_STATE

log = structlog.get_logger()


def kafka_feed(bootstrap: str, group_id: str = "meetvar-dashboard") -> Feed:
    async def feed(state: DashboardState) -> None:
        while True:
            consumer = make_consumer(bootstrap, group_id, DECISIONS, EXPLANATIONS, MEET_STATE)
            try:
                await consumer.start()
                state.feed_error = None
                async for record in consumer:
                    _dispatch(state, record.topic, record.value or b"")
                    await consumer.commit()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker went away: show it, and keep trying
                state.feed_error = f"lost the broker at {bootstrap}: {exc}"
                log.error("dashboard.feed_error", error=str(exc))
                await asyncio.sleep(2.0)
            finally:
                await consumer.stop()

    return feed


def _dispatch(state: DashboardState, topic: str, value: bytes) -> None:
    try:
        if topic == DECISIONS:
            state.on_decision(DecisionMsg.parse(value).model_dump(mode="json"))
        elif topic == EXPLANATIONS:
            state.on_explanation(ExplanationMsg.parse(value).model_dump(mode="json"))
        elif topic == MEET_STATE:
            state.on_state(StateMsg.parse(value).model_dump(mode="json"))
    except SchemaError as exc:
        log.error("dashboard.bad_message", topic=topic, error=str(exc))
