"""Attempt identity across restarts, replays and redeliveries, on the real referee without a broker.

A "crash" here is a new :class:`RefereeProcessor` whose ledger holds what the old one emitted (as
recovery reads it back from ``decisions``), fed from a rewound point of the same poses.
"""

from __future__ import annotations

from typing import Any

import pytest

from dashboard.store import DashboardStore
from referee.keypoints import PoseFrame
from stream_processors.attempts import (
    SAME_BOTTOM_US,
    AttemptLedger,
    MeetAttempt,
    MeetTimeline,
    meet_attempt_id,
    time_attempt_id,
)
from stream_processors.referee_processor import RefereeProcessor
from stream_processors.schemas import DecisionMsg, PoseMsg, StateMsg
from tests.synthetic import squat_session

START_US = 1_760_000_000_000_000
DEPTHS = [1.25, 0.7, 1.3]  # good, high (no lift), good
MEET, PLATFORM = "meet1", "platform-A"


def pose_msgs(frames: list[PoseFrame], camera: str = "side", start_us: int = START_US) -> list[PoseMsg]:
    msgs = [
        PoseMsg(
            meet=MEET, platform=PLATFORM, camera=camera, stream_start_us=start_us, seq=i, frame=f.to_json()
        )
        for i, f in enumerate(frames)
    ]
    end = PoseMsg(
        meet=MEET,
        platform=PLATFORM,
        camera=camera,
        stream_start_us=start_us,
        seq=len(msgs),
        end_of_stream=True,
    )
    return [*msgs, end]


def run(processor: RefereeProcessor, msgs: list[PoseMsg]) -> list[DecisionMsg]:
    return [d for m in msgs for d, _ in processor.handle(m)]


def calls(decisions: list[DecisionMsg]) -> list[tuple[str, str, int, int]]:
    return [
        (d.attempt_id, d.attempt["verdict"], d.attempt["rep"], d.attempt["capture_us"]["bottom"])
        for d in decisions
    ]


def restarted(
    msgs: list[PoseMsg], crash: int, rewind: int, emitted_upto: int | None = None
) -> list[DecisionMsg]:
    """Decisions of a referee that processed ``msgs[:emitted_upto]`` (default: up to the crash) and
    crashed; its successor reads the emitted decisions back and is fed from ``rewind`` on."""
    first = run(RefereeProcessor(), msgs[: crash if emitted_upto is None else emitted_upto])
    ledger = AttemptLedger()
    for d in first:
        ledger.record(d)
    second = run(RefereeProcessor(ledger=ledger), msgs[rewind:])
    return first + second


@pytest.fixture(scope="module")
def session() -> tuple[list[PoseMsg], list[DecisionMsg]]:
    msgs = pose_msgs(squat_session(DEPTHS, start_us=START_US))
    return msgs, run(RefereeProcessor(), msgs)


def test_ids_name_camera_and_bottom_and_calls_are_the_referees(session: Any) -> None:
    _, decisions = session
    assert [d.attempt["verdict"] for d in decisions] == ["good", "no_lift", "good"]
    assert [d.attempt_id for d in decisions] == [
        time_attempt_id(MEET, PLATFORM, "side", d.attempt["capture_us"]["bottom"]) for d in decisions
    ]
    assert [d.attempt["rep"] for d in decisions] == [1, 2, 3]
    assert len({d.attempt_id for d in decisions}) == 3


def test_restart_at_any_frame_gives_the_same_attempts_once(session: Any) -> None:
    """Crash after every 14th message, each successor rewound to the start of the poses (the rewind
    window covers the session): exactly the uninterrupted ids, calls, rep numbers and bottoms."""
    msgs, uninterrupted = session
    for crash in range(1, len(msgs), 14):
        got = restarted(msgs, crash, rewind=0)
        assert calls(got) == calls(uninterrupted), f"crash after message {crash}"


def test_redelivered_frames_after_the_commit_are_not_judged_twice(session: Any) -> None:
    """At-least-once: the crashed referee emitted decisions for frames past its committed offset; its
    successor is fed again from a rewound point well before them."""
    msgs, uninterrupted = session
    for crash in range(40, len(msgs), 37):
        got = restarted(msgs, crash, rewind=max(0, crash - 150), emitted_upto=crash)
        assert calls(got) == calls(uninterrupted), f"crash after message {crash}"
        again = restarted(msgs, crash, rewind=0, emitted_upto=min(len(msgs), crash + 40))
        assert calls(again) == calls(uninterrupted), f"crash after message {crash}, redelivered"


def test_replay_gives_the_same_ids_and_into_the_same_pipeline_adds_nothing(session: Any) -> None:
    msgs, uninterrupted = session
    assert calls(run(RefereeProcessor(), msgs)) == calls(uninterrupted)  # a fresh pipeline
    live = RefereeProcessor()
    assert calls(run(live, msgs)) == calls(uninterrupted)
    assert run(live, msgs) == []  # replayed into the live pipeline: every attempt is already there
    assert run(live, msgs[100:250]) == []  # a redelivered stretch


def test_a_restart_whose_window_misses_the_start_still_judges_once_and_says_so(session: Any) -> None:
    msgs, uninterrupted = session
    second = uninterrupted[1].attempt["capture_us"]
    # Crash and rewind in rep 2's descent, after its start: no earlier frame is replayed.
    crash = next(
        i for i, m in enumerate(msgs) if m.frame and m.frame["capture_us"] > second["start"] + 200_000
    )
    assert msgs[crash].frame and msgs[crash].frame["capture_us"] < second["bottom"]
    got = restarted(msgs, crash, rewind=crash)
    assert [g[0] for g in calls(got)] == [u[0] for u in calls(uninterrupted)]
    assert [g[1] for g in calls(got)] == [u[1] for u in calls(uninterrupted)]
    note = [r for r in got[1].attempt["reasons"] if "referee restarted" in r]
    assert note, got[1].attempt["reasons"]
    assert not any("referee restarted" in r for d in (got[0], got[2]) for r in d.attempt["reasons"])


def test_a_bottom_moved_by_frames_is_the_same_attempt() -> None:
    ledger = AttemptLedger()
    bottom = START_US + 4_000_000
    aid, seen = ledger.resolve(MEET, PLATFORM, "side", bottom, None)
    assert not seen and aid == time_attempt_id(MEET, PLATFORM, "side", bottom)
    ledger.record(_decision(aid, "side", bottom))
    for shift in (-66_667, -33_333, 33_333, 66_667, SAME_BOTTOM_US - 1):
        assert ledger.resolve(MEET, PLATFORM, "side", bottom + shift, None) == (aid, True)
    other, seen = ledger.resolve(MEET, PLATFORM, "side", bottom + 3_000_000, None)
    assert not seen and other != aid
    assert ledger.resolve(MEET, PLATFORM, "front", bottom, None)[1] is False  # another camera's own


def test_ids_name_the_meet_attempt_when_meet_state_knows_it() -> None:
    frames = squat_session([1.25, 1.25, 0.7], start_us=START_US)
    msgs = pose_msgs(frames)
    uninterrupted = run(RefereeProcessor(), msgs)
    bottoms = [d.attempt["capture_us"]["bottom"] for d in uninterrupted]

    def states() -> list[StateMsg]:
        # Lifter A's first attempt in force from the start; the meet software is not advanced for the
        # second squat (a second movement under the same attempt); lifter B is called before the third.
        between = (bottoms[1] + bottoms[2]) // 2
        return [
            StateMsg(meet=MEET, platform=PLATFORM, lifter="A. Lifter", lift="squat", attempt_number=1),
            StateMsg(
                meet=MEET, platform=PLATFORM, lifter="B/Two", lift="squat", attempt_number=2, at_us=between
            ),
        ]

    def fresh() -> RefereeProcessor:
        p = RefereeProcessor()
        for s in states():
            p.handle_state(s)
        return p

    got = run(fresh(), msgs)
    assert [d.attempt_id for d in got] == [
        meet_attempt_id(MEET, PLATFORM, "side", MeetAttempt("A. Lifter", "squat", 1)),
        time_attempt_id(MEET, PLATFORM, "side", bottoms[1]),  # never overwrites A's first attempt
        meet_attempt_id(MEET, PLATFORM, "side", MeetAttempt("B/Two", "squat", 2)),
    ]
    assert got[2].attempt_id == "meet1/platform-A/side/B%2FTwo/squat/2"
    # The state arriving in another order relative to the frames names the same attempts.
    timeline = MeetTimeline()
    for s in reversed(states()):
        timeline.note(s)
    assert timeline.at(MEET, PLATFORM, bottoms[0]) == MeetAttempt("A. Lifter", "squat", 1)
    # Restarts anywhere: the successor has the ledger and the timeline read back.
    for crash in range(1, len(msgs), 17):
        first = run(fresh(), msgs[:crash])
        ledger = AttemptLedger()
        for d in first:
            ledger.record(d)
        second = RefereeProcessor(ledger=ledger)
        for s in states():
            second.timeline.note(s)
        assert calls(first + run(second, msgs)) == calls(got), f"crash after message {crash}"


def test_fused_ids_follow_the_scheme_and_survive_a_restart() -> None:
    side = pose_msgs(squat_session(DEPTHS, start_us=START_US), camera="side")
    front = pose_msgs(squat_session(DEPTHS, start_us=START_US, yaw_deg=60.0), camera="front")
    msgs = [m for pair in zip(side, front, strict=True) for m in pair]
    uninterrupted = run(RefereeProcessor(), msgs)
    fused = [d for d in uninterrupted if d.camera == "fused"]
    assert len(fused) == 3
    for d in fused:
        assert d.attempt_id == time_attempt_id(MEET, PLATFORM, "fused", d.attempt["capture_us"]["bottom"])
    assert len({d.attempt_id for d in uninterrupted}) == len(uninterrupted) == 9
    for crash in range(5, len(msgs), 67):
        got = restarted(msgs, crash, rewind=0)
        assert sorted(calls(got)) == sorted(calls(uninterrupted)), f"crash after message {crash}"


def test_dashboard_keeps_one_row_per_attempt_across_a_restart(session: Any) -> None:
    """The bug this replaces: a restarted referee's rep counter began at 1 again and its next squat
    overwrote an earlier lift's row. Now each attempt is one row, however often it is delivered."""
    msgs, uninterrupted = session
    store = DashboardStore(":memory:")
    crash = len(msgs) // 2
    got = restarted(msgs, crash, rewind=0, emitted_upto=crash + 30)
    for d in [*got, *got]:  # every decision delivered twice
        store.upsert_decision(d.model_dump(mode="json"))
    rows = [store.attempt(d.attempt_id) for d in uninterrupted]
    assert all(r is not None for r in rows)
    assert [r["attempt"]["verdict"] for r in rows if r] == ["good", "no_lift", "good"]
    assert len({r["lift_id"] for r in rows if r}) == 3


def _decision(aid: str, camera: str, bottom_us: int) -> DecisionMsg:
    times = {"start": bottom_us - 1, "bottom": bottom_us, "end": bottom_us + 1}
    attempt = {"rep": 1, "bottom_s": 1.0, "capture_us": times}
    return DecisionMsg(
        attempt_id=aid, meet=MEET, platform=PLATFORM, camera=camera, attempt=attempt, decided_us=0
    )
