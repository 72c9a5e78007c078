"""Several cameras judged like three referees."""

from __future__ import annotations

from referee.fusion import PlatformFusion, fuse
from referee.referee import Referee
from tests.synthetic import squat_session


def call(depth: float, yaw: float = 90.0):  # type: ignore[no-untyped-def]
    (d,) = Referee().run(squat_session([depth], yaw_deg=yaw))
    return d


def test_majority_of_lights_decides() -> None:
    deep, high = call(1.3), call(0.6)
    fused = fuse({"left": deep, "right": deep, "front": high})
    assert fused.lights == ("no_lift", "good", "good") and fused.verdict == "good"
    assert fused.cards == ()  # one camera's red card is outvoted, as with three referees
    fused = fuse({"left": high, "right": high, "front": deep})
    assert fused.verdict == "no_lift" and fused.cards == ("red",)


def test_a_tie_is_left_to_the_humans() -> None:
    fused = fuse({"left": call(1.3), "right": call(0.6)})
    assert fused.verdict == "undecided" and "disagree 1–1" in fused.reasons[0]


def test_a_blind_camera_does_not_vote() -> None:
    deep, front = call(1.3), call(1.3, yaw=5.0)
    assert front.verdict == "undecided"
    fused = fuse({"side": deep, "front": front})
    assert fused.verdict == "good" and fused.depth_status == "below"
    assert fused.margin_cm == deep.depth.margin_cm  # only the deciding camera's margin counts


def test_platform_fusion_waits_for_every_live_camera() -> None:
    fusion = PlatformFusion()
    live = {"left", "right"}
    assert fusion.add("left", call(1.3), live) == []
    (fused,) = fusion.add("right", call(1.25), live)
    assert fused.cameras == ("left", "right") and fused.verdict == "good"


def test_streaming_processor_emits_a_fused_call_for_two_cameras() -> None:
    from stream_processors.referee_processor import RefereeProcessor
    from stream_processors.schemas import PoseMsg

    processor = RefereeProcessor()
    cams = {
        "left": squat_session([1.3], start_us=1_000_000),
        "right": squat_session([0.6], start_us=1_000_000),
    }
    msgs = []
    for i in range(len(cams["left"])):
        for cam, frames in cams.items():
            msgs.append(
                PoseMsg(
                    meet="m", platform="p", camera=cam, stream_start_us=0, seq=0, frame=frames[i].to_json()
                )
            )
    for cam in cams:
        msgs.append(PoseMsg(meet="m", platform="p", camera=cam, stream_start_us=0, seq=1, end_of_stream=True))
    out = [m for msg in msgs for m in processor.handle(msg)]
    by_camera = {m.camera: m for m, _ in out}
    assert set(by_camera) == {"left", "right", "fused"}
    assert (
        by_camera["left"].attempt["verdict"] == "good" and by_camera["right"].attempt["verdict"] == "no_lift"
    )
    fused = by_camera["fused"].attempt
    assert fused["verdict"] == "undecided" and fused["fused"]["lights"] == ["good", "no_lift"]
    assert [d is None for m, d in out if m.camera == "fused"] == [True]


def test_meet_state_signals_reach_the_streaming_referee() -> None:
    from stream_processors.referee_processor import RefereeProcessor
    from stream_processors.schemas import PoseMsg, StateMsg
    from tests.synthetic import FPS

    processor = RefereeProcessor()
    frames = squat_session([1.3])
    out = []
    for i, f in enumerate(frames):
        if i == int(2.0 * FPS):  # the head referee says "Squat" half a second into the descent
            processor.handle_state(StateMsg(meet="m", platform="p", command="squat", at_us=f.capture_us))
        if i == int(4.0 * FPS):
            processor.handle_state(StateMsg(meet="m", platform="p", command="rack", at_us=f.capture_us))
        msg = PoseMsg(meet="m", platform="p", camera="side", stream_start_us=0, seq=0, frame=f.to_json())
        out += processor.handle(msg)
    out += processor.handle(
        PoseMsg(meet="m", platform="p", camera="side", stream_start_us=0, seq=1, end_of_stream=True)
    )
    ((decision, _),) = out
    assert decision.attempt["cards"] == ["yellow"]
    assert any("Squat signal" in r for r in decision.attempt["reasons"])
