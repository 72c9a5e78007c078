"""The referee as a faust app: ``poses`` in, ``decisions`` out; and, off the judging path, ``decisions``
in, ``explanations`` out.

Thin by design: faust moves messages; :class:`RefereeProcessor` holds the per-camera referees; the
explainer turns each decision into words. One agent instance processes a partition in order, which is
what the segmentation state machine needs.

Explanations have their own agent, a consumer of ``decisions``: a slow model (the explainer waits up to
its timeout for Claude) delays only the words, never the next camera's call. Fused calls get no
explanation of their own (their cameras' explanations cover them). ``stream_processors.explainer`` is
the one place that calls Claude.

Referee state is in memory (faust's memory store, as Tansu requires). Before the worker starts,
:func:`stream_processors.referee_recovery.recover` rebuilds it as the previous run left it: the emitted
attempts from ``decisions``, who is lifting from ``meet.state``, and each camera's segmenter from the
``poses`` before the committed offset (rewound :data:`~stream_processors.referee_recovery.REWIND_S`).
So an attempt in progress at a crash is judged from the frames before and after it, under the id it
would have had, exactly once; when the rewound frames do not reach back to its start, the decision's
reasons say that the referee restarted during it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import faust
import structlog

from meetvar.logs import configure
from meetvar.metrics import DECISION_COUNT, ERRORS, observe_pose_lag
from stream_processors.attempts import FUSED
from stream_processors.explainer import Explainer
from stream_processors.faust_app import make_app, run_worker
from stream_processors.kafka import ensure_topics, wait_for_broker
from stream_processors.referee_processor import RefereeProcessor
from stream_processors.referee_recovery import recover
from stream_processors.schemas import DecisionMsg, ExplanationMsg, PoseMsg, SchemaError, StateMsg
from stream_processors.topics import ALL_TOPICS, DECISIONS, EXPLANATIONS, MEET_STATE, POSES, platform_key

log = structlog.get_logger()
M = TypeVar("M")


def _parsed(parse: Callable[[bytes], M], value: bytes, event: str) -> M | None:
    """A message, or None after logging and counting it as bad input: one bad record loses only itself."""
    try:
        return parse(value)
    except SchemaError as exc:
        log.error(event, error=str(exc))
        ERRORS.labels(service="referee", kind="bad_message").inc()
        return None


APP_ID = "meetvar-referee"  # also the consumer group whose committed offsets recovery reads


def build_app(
    bootstrap: str,
    datadir: Path,
    explainer: Explainer | None = None,
    processor: RefereeProcessor | None = None,
) -> faust.App:
    app = make_app(APP_ID, bootstrap, datadir=datadir)
    raw: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    poses = app.topic(POSES, **raw)
    decisions = app.topic(DECISIONS, **raw)
    explanations = app.topic(EXPLANATIONS, key_serializer="raw", value_serializer="raw")
    states = app.topic(MEET_STATE, **raw)
    referee = processor if processor is not None else RefereeProcessor()
    explain = explainer or Explainer()

    @app.agent(states)
    async def follow_signals(stream: Any) -> None:
        async for value in stream:
            if (state := _parsed(StateMsg.parse, value, "referee.bad_state_message")) is not None:
                referee.handle_state(state)

    @app.agent(poses)
    async def judge(stream: Any) -> None:
        async for value in stream:
            if (msg := _parsed(PoseMsg.parse, value, "referee.bad_pose_message")) is None:
                continue
            observe_pose_lag(msg, "referee")
            for decision_msg, _ in referee.handle(msg):
                await decisions.send(
                    key=platform_key(msg.meet, msg.platform).encode(), value=decision_msg.dump()
                )
                if decision_msg.camera != FUSED:
                    verdict = str(decision_msg.attempt.get("verdict", "undecided"))
                    DECISION_COUNT.labels(service="referee", verdict=verdict).inc()
                log.info(
                    "referee.decision",
                    attempt_id=decision_msg.attempt_id,
                    camera=decision_msg.camera,
                    verdict=decision_msg.attempt["verdict"],
                )

    @app.agent(decisions)
    async def narrate(stream: Any) -> None:
        async for value in stream:
            if (decision := _parsed(DecisionMsg.parse, value, "referee.bad_decision_message")) is None:
                continue
            if decision.camera == FUSED:  # its cameras' explanations cover it
                continue
            words = await explain.explain_attempt(decision.attempt)
            out = ExplanationMsg(
                attempt_id=decision.attempt_id,
                text=words.text,
                model=words.model,
                prompt_hash=words.prompt_hash,
            )
            await explanations.send(key=decision.attempt_id.encode(), value=out.dump())

    return app


def run_referee(bootstrap: str, datadir: Path) -> int:
    configure("referee")
    processor = asyncio.run(_prepare(bootstrap))
    app = build_app(bootstrap, datadir, processor=processor)
    run_worker(app, loglevel="warning")


async def _prepare(bootstrap: str) -> RefereeProcessor:
    await wait_for_broker(bootstrap, timeout=10)
    await ensure_topics(bootstrap, ALL_TOPICS)
    processor = RefereeProcessor()
    await recover(bootstrap, APP_ID, processor)
    return processor
