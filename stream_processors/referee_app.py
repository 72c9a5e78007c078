"""The referee as a faust app: ``poses`` in, ``decisions`` and ``explanations`` out.

Thin by design: faust moves messages; :class:`RefereeProcessor` holds the per-camera referees; the
explainer turns each decision into words. One agent instance processes a partition in order, which is
what the segmentation state machine needs. Referee state is in memory (faust's memory store, as Tansu
requires): after a restart the group resumes from its committed offset and starts a fresh referee, so an
attempt in progress at the crash is judged from the frames after it (recorded in the decision's reasons).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import faust
import structlog

from meetvar.logs import configure
from stream_processors.explainer import Explainer
from stream_processors.faust_app import make_app, run_worker
from stream_processors.kafka import ensure_topics, wait_for_broker
from stream_processors.referee_processor import RefereeProcessor
from stream_processors.schemas import ExplanationMsg, PoseMsg, SchemaError, StateMsg
from stream_processors.topics import ALL_TOPICS, DECISIONS, EXPLANATIONS, MEET_STATE, POSES, platform_key

log = structlog.get_logger()


def build_app(bootstrap: str, datadir: Path, explainer: Explainer | None = None) -> faust.App:
    app = make_app("meetvar-referee", bootstrap, datadir=datadir)
    poses = app.topic(POSES, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    decisions = app.topic(DECISIONS, key_serializer="raw", value_serializer="raw")
    explanations = app.topic(EXPLANATIONS, key_serializer="raw", value_serializer="raw")
    states = app.topic(
        MEET_STATE, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    processor = RefereeProcessor()
    explain = explainer or Explainer()

    @app.agent(states)
    async def follow_signals(stream: Any) -> None:
        async for value in stream:
            try:
                processor.handle_state(StateMsg.parse(value))
            except SchemaError as exc:
                log.error("referee.bad_state_message", error=str(exc))

    @app.agent(poses)
    async def judge(stream: Any) -> None:
        async for value in stream:
            try:
                msg = PoseMsg.parse(value)
            except SchemaError as exc:
                log.error("referee.bad_pose_message", error=str(exc))
                continue
            for decision_msg, decision in processor.handle(msg):
                await decisions.send(
                    key=platform_key(msg.meet, msg.platform).encode(), value=decision_msg.dump()
                )
                log.info(
                    "referee.decision",
                    attempt_id=decision_msg.attempt_id,
                    camera=decision_msg.camera,
                    verdict=decision_msg.attempt["verdict"],
                )
                if decision is None:  # a fused call: its cameras' explanations already went out
                    continue
                words = await explain.explain(decision)
                out = ExplanationMsg(
                    attempt_id=decision_msg.attempt_id,
                    text=words.text,
                    model=words.model,
                    prompt_hash=words.prompt_hash,
                )
                await explanations.send(key=decision_msg.attempt_id.encode(), value=out.dump())

    return app


def run_referee(bootstrap: str, datadir: Path) -> int:
    configure("referee")
    asyncio.run(_prepare(bootstrap))
    app = build_app(bootstrap, datadir)
    run_worker(app, loglevel="warning")


async def _prepare(bootstrap: str) -> None:
    await wait_for_broker(bootstrap, timeout=10)
    await ensure_topics(bootstrap, ALL_TOPICS)
