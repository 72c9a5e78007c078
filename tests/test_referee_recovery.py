"""Crash recovery and explanations off the judging path, against the real Tansu broker.

``recover`` is driven directly on the session broker (own topic names); the faust referee itself
runs as a subprocess on a broker of its own (it uses the fixed topic names), killed with SIGKILL
mid-attempt, and judged against an uninterrupted run of the same poses.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from stream_processors.kafka import ensure_topics, make_consumer, make_producer
from stream_processors.referee_processor import RefereeProcessor
from stream_processors.referee_recovery import RefereeTopics, recover
from stream_processors.schemas import DecisionMsg, ExplanationMsg, PoseMsg
from stream_processors.tansu import TansuBroker
from stream_processors.topics import ALL_TOPICS, DECISIONS, EXPLANATIONS, POSES, camera_key
from tests.synthetic import squat_session
from tests.test_attempt_ids import DEPTHS, START_US, calls, pose_msgs, run
from tests.test_dashboard import FakeClaude

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
REFEREE_GROUP = "meetvar-referee"


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def decision_points(msgs: list[PoseMsg]) -> list[int]:
    """Index of the message whose processing emits each decision."""
    processor = RefereeProcessor()
    return [i for i, m in enumerate(msgs) for _ in processor.handle(m)]


async def produce(bootstrap: str, topic: str, values: list[bytes], keys: list[bytes]) -> None:
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        futures = [await producer.send(topic, v, key=k) for v, k in zip(values, keys, strict=True)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def produce_poses(bootstrap: str, topic: str, msgs: list[PoseMsg]) -> None:
    keys = [camera_key(m.meet, m.platform, m.camera).encode() for m in msgs]
    await produce(bootstrap, topic, [m.dump() for m in msgs], keys)


async def read_all(bootstrap: str, topic: str, settle_s: float = 0.5) -> list[Any]:
    consumer = make_consumer(bootstrap, None)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        out: list[Any] = []
        while True:
            batch = await consumer.getmany(tp, timeout_ms=int(settle_s * 1000))
            if not batch.get(tp):
                return out
            out += batch[tp]
    finally:
        await consumer.stop()


async def commit(bootstrap: str, group: str, topic: str, offset: int) -> None:
    consumer = make_consumer(bootstrap, group)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.commit({tp: offset})
    finally:
        await consumer.stop()


async def committed(bootstrap: str, group: str, topic: str) -> int | None:
    consumer = make_consumer(bootstrap, group)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        return await consumer.committed(tp)
    finally:
        await consumer.stop()


@pytest.fixture(scope="module")
def session() -> tuple[list[PoseMsg], list[DecisionMsg], list[int]]:
    msgs = pose_msgs(squat_session(DEPTHS, start_us=START_US))
    return msgs, run(RefereeProcessor(), msgs), decision_points(msgs)


# --- recover() on the broker ---------------------------------------------------------------------


@pytest.mark.parametrize("case", ["emitted_past_commit", "committed_but_never_emitted"])
async def test_recovery_rebuilds_the_attempt_in_progress(
    broker: TansuBroker, session: Any, case: str
) -> None:
    msgs, uninterrupted, points = session
    b = broker.bootstrap
    t = RefereeTopics(poses=_name("poses"), decisions=_name("decisions"), state=_name("state"))
    group = _name("referee")
    await ensure_topics(b, [t.poses, t.decisions, t.state])
    await produce_poses(b, t.poses, msgs)
    bottom2 = uninterrupted[1].attempt["capture_us"]["bottom"]
    if case == "emitted_past_commit":
        # Committed mid-descent of rep 2; it went on to emit rep 2 before dying (at-least-once).
        crash = next(i for i, m in enumerate(msgs) if m.frame and m.frame["capture_us"] >= bottom2 - 300_000)
        emitted_upto = points[1] + 5
    else:
        # Rep 2's frames were all processed and committed, but its decision never reached the broker.
        crash, emitted_upto = points[1] + 5, points[1]
    first = run(RefereeProcessor(), msgs[:emitted_upto])
    await produce(b, t.decisions, [d.dump() for d in first], [b"k"] * len(first))
    await commit(b, group, t.poses, crash)

    # The successor: recovery, then the consumer resumes at the committed offset.
    successor = RefereeProcessor()
    report = await recover(b, group, successor, topics=t)
    assert report.rewound == {0: (0, crash)}  # the 60 s window covers the whole session
    assert report.decisions_read == len(first)
    expected_emitted = [] if case == "emitted_past_commit" else [uninterrupted[1].attempt_id]
    assert [d.attempt_id for d in report.emitted] == expected_emitted
    rest = run(successor, msgs[crash:])
    await produce(b, t.decisions, [d.dump() for d in rest], [b"k"] * len(rest))

    # A second crash before anything new was committed: recovery again adds nothing.
    third = RefereeProcessor()
    again = await recover(b, group, third, topics=t)
    assert again.emitted == [] and run(third, msgs[crash:]) == []

    on_topic = [DecisionMsg.parse(r.value) for r in await read_all(b, t.decisions)]
    assert sorted(calls(on_topic)) == sorted(calls(uninterrupted))  # each attempt once, same call


async def test_rewind_point_is_the_window_before_the_last_committed_frame(
    broker: TansuBroker, session: Any
) -> None:
    msgs, _, _ = session
    b = broker.bootstrap
    t = RefereeTopics(poses=_name("poses"), decisions=_name("decisions"), state=_name("state"))
    group = _name("referee")
    await ensure_topics(b, [t.poses, t.decisions, t.state])
    await produce_poses(b, t.poses, msgs)
    crash = 300
    await commit(b, group, t.poses, crash)
    report = await recover(b, group, RefereeProcessor(), topics=t, window_s=2.0)
    start, end = report.rewound[0]
    assert end == crash
    last = msgs[crash - 1].frame
    assert last is not None
    target = last["capture_us"] - 2_000_000
    captures = [m.frame["capture_us"] for m in msgs if m.frame is not None]
    assert captures[start] >= target > captures[start - 1]
    assert report.poses_replayed == crash - start


# --- the faust referee, as a process ---------------------------------------------------------------


class Referee:
    def __init__(self, bootstrap: str, root: Path, env: dict[str, str] | None = None) -> None:
        self.bootstrap, self.root, self.env = bootstrap, root, env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        log = open(self.root / f"referee-{self.runs}.log", "wb")  # noqa: SIM115 - closed with the process
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "meetvar.cli", "referee", "--broker", self.bootstrap,
             "--data-dir", str(self.root / "referee")],
            cwd=REPO, env={**env, **self.env}, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-2000:] for p in sorted(self.root.glob("referee-*.log"))
        )


async def wait_for(what: str, check: Any, timeout: float, referee: Referee) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{referee.tail()}"
        await asyncio.sleep(0.3)


async def test_a_slow_explainer_does_not_delay_decisions(tmp_path: Path, session: Any) -> None:
    msgs, uninterrupted, _ = session
    claude = FakeClaude(["Deep enough."], delay_s=5.0)
    async with TansuBroker(tmp_path / "broker") as broker:
        b = broker.bootstrap
        await ensure_topics(b, ALL_TOPICS)
        env = {"ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": claude.url}
        referee = Referee(b, tmp_path, env)
        referee.start()
        try:
            await produce_poses(b, POSES, msgs)

            async def decided() -> list[Any]:
                got = await read_all(b, DECISIONS, settle_s=0.2)
                return got if len(got) >= len(uninterrupted) else []

            decisions = await wait_for("the decisions", decided, 60, referee)
            first_words = await wait_for(
                "an explanation", lambda: read_all(b, EXPLANATIONS, settle_s=0.2), 30, referee
            )
        finally:
            referee.stop()
            claude.close()
    assert [d.attempt_id for d in map(lambda r: DecisionMsg.parse(r.value), decisions)] == [
        d.attempt_id for d in uninterrupted
    ]
    stamps = [r.timestamp for r in decisions]  # when the referee produced them, ms
    explained_at = first_words[0].timestamp
    # Three attempts judged back to back, while the model took 5 s over the first one's words.
    assert max(stamps) - min(stamps) < 2000, stamps
    assert explained_at - min(stamps) >= 4500
    assert max(stamps) < explained_at
    words = ExplanationMsg.parse(first_words[0].value)
    assert words.model != "template" and words.text == "Deep enough."
    assert words.attempt_id == uninterrupted[0].attempt_id


async def test_referee_killed_mid_attempt_loses_and_doubles_nothing(tmp_path: Path, session: Any) -> None:
    msgs, uninterrupted, _ = session
    bottom2 = uninterrupted[1].attempt["capture_us"]["bottom"]
    crash = next(i for i, m in enumerate(msgs) if m.frame and m.frame["capture_us"] >= bottom2 - 300_000)
    async with TansuBroker(tmp_path / "broker") as broker:
        b = broker.bootstrap
        await ensure_topics(b, ALL_TOPICS)
        referee = Referee(b, tmp_path)
        referee.start()
        try:
            await produce_poses(b, POSES, msgs[:crash])

            async def caught_up() -> bool:
                return await committed(b, REFEREE_GROUP, POSES) == crash

            await wait_for("the first run to commit its poses", caught_up, 60, referee)
            before = [DecisionMsg.parse(r.value) for r in await read_all(b, DECISIONS)]
            assert [d.attempt_id for d in before] == [uninterrupted[0].attempt_id]
            referee.kill()  # in rep 2's descent
            await produce_poses(b, POSES, msgs[crash:])
            referee.start()

            async def all_explained() -> list[Any]:
                got = await read_all(b, EXPLANATIONS, settle_s=0.2)
                return got if len(got) >= len(uninterrupted) else []

            explanations = await wait_for("every explanation", all_explained, 90, referee)
            await asyncio.sleep(2.0)  # room for a double to show up
            decisions = [DecisionMsg.parse(r.value) for r in await read_all(b, DECISIONS)]
            explanations = await read_all(b, EXPLANATIONS)
        finally:
            referee.stop()
    assert calls(decisions) == calls(uninterrupted), referee.tail()
    assert sorted(ExplanationMsg.parse(r.value).attempt_id for r in explanations) == sorted(
        d.attempt_id for d in uninterrupted
    )
    assert "referee.recovered" in referee.tail()
