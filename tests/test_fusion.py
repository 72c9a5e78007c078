"""Several cameras judged like three referees, by the one rule the referee and the dashboard share."""

from __future__ import annotations

from typing import Any

from referee.decision import AttemptDecision
from referee.fusion import PlatformFusion, fuse_calls
from referee.referee import Referee
from tests.synthetic import FPS, squat_session


def call(depth: float, yaw: float = 90.0) -> AttemptDecision:
    (d,) = Referee().run(squat_session([depth], yaw_deg=yaw))
    return d


def cams(**calls: AttemptDecision) -> list[dict[str, Any]]:
    return [{"camera": name, "attempt": d.to_json()} for name, d in calls.items()]


def test_majority_of_lights_decides() -> None:
    deep, high = call(1.3), call(0.6)
    fused = fuse_calls(cams(left=deep, right=deep, front=high))
    assert fused["lights"] == {"left": "good", "right": "good", "front": "no_lift"}
    assert fused["verdict"] == "good" and fused["cards"] == []  # one red card is outvoted
    fused = fuse_calls(cams(left=high, right=high, front=deep))
    assert fused["verdict"] == "no_lift" and fused["cards"] == ["red"]


def test_a_tie_is_no_lift_as_on_the_platform() -> None:
    fused = fuse_calls(cams(left=call(1.3), right=call(0.6)))
    assert fused["verdict"] == "no_lift" and "split 1–1" in fused["reasons"][0]


def test_the_call_is_as_sure_as_its_weakest_supporting_camera() -> None:
    deeper, shallower = call(1.4), call(1.15)
    fused = fuse_calls(cams(a=deeper, b=shallower))
    assert fused["verdict"] == "good" and fused["camera"] == "b"
    assert fused["margin_cm"] == shallower.depth.margin_cm


def test_a_blind_camera_does_not_vote() -> None:
    deep, front = call(1.3), call(1.3, yaw=5.0)
    assert front.verdict == "undecided"
    fused = fuse_calls(cams(side=deep, front=front))
    assert fused["verdict"] == "good" and fused["votes"] == {"good": 1, "no_lift": 0, "undecided": 1}


def test_platform_fusion_waits_for_every_live_camera() -> None:
    fusion = PlatformFusion()
    live = {"left", "right"}
    assert fusion.add("left", call(1.3), live) == []
    ((fused, _),) = fusion.add("right", call(1.25), live)
    assert set(fused["lights"]) == {"left", "right"} and fused["verdict"] == "good"


def test_streaming_processor_emits_a_fused_call_for_two_cameras() -> None:
    from stream_processors.referee_processor import RefereeProcessor
    from stream_processors.schemas import PoseMsg

    processor = RefereeProcessor()
    frames = {
        "left": squat_session([1.3], start_us=1_000_000),
        "right": squat_session([0.6], start_us=1_000_000),
    }
    msgs = [
        PoseMsg(meet="m", platform="p", camera=cam, stream_start_us=0, seq=0, frame=fs[i].to_json())
        for i in range(len(frames["left"]))
        for cam, fs in frames.items()
    ]
    msgs += [
        PoseMsg(meet="m", platform="p", camera=c, stream_start_us=0, seq=1, end_of_stream=True)
        for c in frames
    ]
    out = [m for msg in msgs for m in processor.handle(msg)]
    by_camera = {m.camera: m for m, _ in out}
    assert set(by_camera) == {"left", "right", "fused"}
    assert (
        by_camera["left"].attempt["verdict"] == "good" and by_camera["right"].attempt["verdict"] == "no_lift"
    )
    fused = by_camera["fused"].attempt
    assert fused["verdict"] == "no_lift" and fused["fused"]["lights"] == {"left": "good", "right": "no_lift"}
    assert [d is None for m, d in out if m.camera == "fused"] == [True]


def test_meet_state_signals_reach_the_streaming_referee() -> None:
    from stream_processors.referee_processor import RefereeProcessor
    from stream_processors.schemas import PoseMsg, StateMsg

    processor = RefereeProcessor()
    frames = squat_session([1.3])
    out = []
    for i, f in enumerate(frames):
        if i == int(2.0 * FPS):  # the head referee says "Squat" half a second into the descent
            processor.handle_state(StateMsg(meet="m", platform="p", command="squat", at_us=f.capture_us))
        msg = PoseMsg(meet="m", platform="p", camera="side", stream_start_us=0, seq=0, frame=f.to_json())
        out += processor.handle(msg)
    out += processor.handle(
        PoseMsg(meet="m", platform="p", camera="side", stream_start_us=0, seq=1, end_of_stream=True)
    )
    ((decision, _),) = out
    assert decision.attempt["cards"] == ["yellow"]
    assert any("Squat signal" in r for r in decision.attempt["reasons"])
