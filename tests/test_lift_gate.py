"""Only squats are judged for depth: a bench press or a deadlift named by ``meet.state`` is recorded as
"not judged" and never becomes a squat call (per camera or fused)."""

from __future__ import annotations

from stream_processors.attempts import MeetTimeline
from stream_processors.referee_processor import RefereeProcessor
from stream_processors.schemas import Official, OfficialLights, StateMsg
from tests.synthetic import squat_session
from tests.test_attempt_ids import MEET, PLATFORM, START_US, pose_msgs, run


def _state(lift: str, n: int, at_us: int = 0, lifter: str = "Ann") -> StateMsg:
    return StateMsg(meet=MEET, platform=PLATFORM, lifter=lifter, lift=lift, attempt_number=n, at_us=at_us)


def test_bench_and_dead_are_recorded_not_judged_squats_are_judged() -> None:
    msgs = pose_msgs(squat_session([1.25, 0.7, 1.3], start_us=START_US))
    bottoms = [d.attempt["capture_us"]["bottom"] for d in run(RefereeProcessor(), msgs)]
    p = RefereeProcessor()
    p.handle_state(_state("bench", 1))
    p.handle_state(_state("dead", 1, at_us=(bottoms[0] + bottoms[1]) // 2))
    p.handle_state(_state("squat", 3, at_us=(bottoms[1] + bottoms[2]) // 2))
    got = run(p, msgs)
    assert [d.attempt["verdict"] for d in got] == ["not_judged", "not_judged", "good"]
    for d, lift in zip(got[:2], ("bench", "dead"), strict=True):
        a = d.attempt
        assert a["depth"]["status"] == "undecided"
        assert a["depth"]["margin_cm"] is None and a["depth"]["margin_thigh"] is None
        assert a["cards"] == [] and a["reasons"] == [f"not judged: {lift}"]
        assert d.attempt_id == f"{MEET}/{PLATFORM}/side/Ann/{lift}/1"
    assert got[2].attempt_id == f"{MEET}/{PLATFORM}/side/Ann/squat/3"


def test_no_meet_state_judges_as_before() -> None:
    msgs = pose_msgs(squat_session([0.7], start_us=START_US))
    assert [d.attempt["verdict"] for d in run(RefereeProcessor(), msgs)] == ["no_lift"]


def test_two_cameras_on_a_bench_give_no_fused_squat_call() -> None:
    side = pose_msgs(squat_session([0.7, 1.25], start_us=START_US), camera="side")
    front = pose_msgs(squat_session([0.7, 1.25], start_us=START_US, yaw_deg=60.0), camera="front")
    msgs = [m for pair in zip(side, front, strict=True) for m in pair]
    p = RefereeProcessor()
    p.handle_state(_state("bench", 2))
    got = run(p, msgs)
    assert got and all(d.attempt["verdict"] == "not_judged" for d in got)
    fused = [d for d in got if d.camera == "fused"]
    assert len(fused) == 2  # one record per attempt for the platform, not one per camera
    assert all(d.attempt["reasons"] == ["not judged: bench"] for d in fused)


def test_an_official_result_does_not_move_the_timeline() -> None:
    timeline = MeetTimeline()
    timeline.note(_state("squat", 1, at_us=10))
    timeline.note(_state("bench", 1, at_us=20, lifter="Bea"))
    lights = OfficialLights(left="good", head="good", right="bad")
    late = _state("squat", 1, at_us=30).model_copy(
        update={"official": Official(lights=lights, result="good")}
    )
    timeline.note(late)
    assert timeline.lift_at(MEET, PLATFORM, 35) == "bench"
    assert timeline.lift_at(MEET, PLATFORM, 15) == "squat"
    assert timeline.lift_at(MEET, PLATFORM, 5) is None
