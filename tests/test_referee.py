"""The judging core on synthetic lifters whose true depth is known exactly."""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from referee.config import RefereeConfig
from referee.keypoints import BlazePoseLandmark as L
from referee.keypoints import PoseFrame
from referee.referee import Referee
from tests.synthetic import FPS, frames_from_profile, pose_at, rep_profile, squat_session


def test_counts_each_rep_and_finds_the_bottom() -> None:
    frames = squat_session([1.2, 1.2, 1.2])
    decisions = Referee().run(frames)
    assert [d.rep for d in decisions] == [1, 2, 3]
    # Bottoms of the cosine reps: stand 1.5 s, then 2 s per rep + 1.5 s standing.
    for k, d in enumerate(decisions):
        expected = 1.5 + k * 3.5 + 1.0
        assert abs(d.seconds(d.bottom_us) - expected) < 0.1, (k, d.seconds(d.bottom_us))
        assert d.start_us < d.bottom_us < d.end_us
        assert d.ended_by == "lockout"


# The synthetic lifter's landmarks are true joint centres, so these geometry tests use the centre rule.
CENTRES = RefereeConfig(surface_offset_thigh=0.0)


def test_deep_squat_is_below_and_high_squat_is_above() -> None:
    deep, high = Referee(config=CENTRES).run(squat_session([1.25, 0.7]))
    assert deep.depth.status == "below" and deep.verdict == "good" and deep.cards == ()
    assert high.depth.status == "above" and high.verdict == "no_lift" and high.cards == ("red",)
    # Margins in thigh lengths follow the construction: hip centre (1 - depth) thighs above the knee.
    assert deep.depth.margin_thigh is not None and high.depth.margin_thigh is not None
    assert abs(deep.depth.margin_thigh - 0.25) < 0.03
    assert abs(high.depth.margin_thigh - (-0.3)) < 0.03
    assert deep.depth.margin_cm is not None and abs(deep.depth.margin_cm - 0.25 * 42) < 1.5
    assert high.depth.confidence > 0.9


def test_too_close_to_call_goes_to_the_referees_with_its_interval() -> None:
    (near,) = Referee(config=CENTRES).run(squat_session([1.01]))
    (clear,) = Referee(config=CENTRES).run(squat_session([1.3]))
    d = near.depth
    assert d.status == "undecided" and near.verdict == "undecided" and near.cards == ()
    assert d.margin_cm_interval is not None and d.margin_cm is not None
    low, high = d.margin_cm_interval
    assert low < 0.0 < high and low < d.margin_cm < high
    said = re.fullmatch(r"too close to call: ([+-]\d+\.\d) ± (\d+\.\d) cm", d.reasons[0])
    assert said is not None, d.reasons
    assert abs(float(said[1]) - d.margin_cm) <= 0.051 and abs(float(said[2]) - (high - low) / 2) <= 0.06
    # Confidence is the probability that the lean is right: near a coin toss here, near 1 when clear.
    assert 0.5 <= d.confidence < 0.7
    assert clear.depth.status == "below" and clear.depth.confidence > 0.99
    assert clear.depth.margin_cm_interval is not None and clear.depth.margin_cm_interval[0] > 0


def test_confidence_is_the_normal_probability_of_the_margin_over_its_uncertainty() -> None:
    import math

    for depth in (0.9, 0.95, 1.05, 1.12):
        (d,) = Referee(config=CENTRES).run(squat_session([depth]))
        m, sigma = d.depth.margin_thigh, d.depth.uncertainty_thigh
        assert m is not None and sigma is not None and sigma > 0
        expected = 0.5 * (1 + math.erf(abs(m) / (sigma * math.sqrt(2))))
        assert abs(d.depth.confidence - expected) < 2e-3, (depth, d.depth)
        # Decided exactly when the interval (±z·sigma) leaves zero out.
        decided = abs(m) > CENTRES.interval_z * sigma
        assert (d.depth.status != "undecided") == decided


def test_surface_offset_shifts_the_margin_by_exactly_its_value() -> None:
    frames = squat_session([0.85])
    (centre,) = Referee(config=CENTRES).run(frames)
    (surface,) = Referee(config=RefereeConfig(surface_offset_thigh=0.3)).run(frames)
    assert centre.depth.status == "above" and surface.depth.status == "below"
    assert centre.depth.margin_thigh is not None and surface.depth.margin_thigh is not None
    assert abs(surface.depth.margin_thigh - centre.depth.margin_thigh - 0.3) < 1e-3


def test_front_view_is_undecided_not_above() -> None:
    (d,) = Referee().run(squat_session([0.7], yaw_deg=5.0))
    assert d.depth.status == "undecided" and d.verdict == "undecided"
    assert any("front or rear" in r for r in d.reasons)


def test_small_dips_are_not_attempts() -> None:
    assert Referee().run(squat_session([0.15, 0.2])) == []


def test_lifter_leaving_mid_attempt_ends_it() -> None:
    frames = squat_session([1.2])
    # Cut the stream just after the bottom and show an empty frame for a second.
    cut = int((1.5 + 1.1) * FPS)
    kept = frames[:cut]
    last = kept[-1]
    gone = [
        dataclasses.replace(
            pose_at(0.0, t_us=last.capture_us + int((i + 1) * 1e6 / FPS), index=cut + i), keypoints=None
        )
        for i in range(int(FPS))
    ]
    decisions = Referee().run([*kept, *gone])
    assert len(decisions) == 1
    assert decisions[0].ended_by == "lifter_left"
    assert decisions[0].depth.status == "below"


def test_same_frames_same_decisions_through_json() -> None:
    frames = squat_session([1.1, 0.8])
    direct = [d.to_json() for d in Referee().run(frames)]
    round_tripped = [d.to_json() for d in Referee().run(PoseFrame.from_json(f.to_json()) for f in frames)]
    assert direct == round_tripped and len(direct) == 2


def codes(frames: list[PoseFrame]) -> tuple[str, list[str], tuple[str, ...]]:
    (d,) = Referee().run(frames)
    return d.verdict, [r for r in d.reasons if "card" in r], d.cards


def test_clean_deep_rep_has_no_fault() -> None:
    verdict, card_reasons, cards = codes(frames_from_profile(rep_profile(1.3)))
    assert (verdict, card_reasons, cards) == ("good", [], ())


def test_soft_knees_at_start_or_finish_earn_a_blue_card() -> None:
    # Depth 0.25 keeps the hips high (not a rep) but bends the knee to about 130°.
    verdict, reasons, cards = codes(frames_from_profile(rep_profile(1.3, base_start=0.25)))
    assert verdict == "no_lift" and cards == ("blue",) and "at the start" in reasons[0]
    verdict, reasons, cards = codes(frames_from_profile(rep_profile(1.3, base_end=0.25)))
    assert verdict == "no_lift" and cards == ("blue",) and "at the finish" in reasons[0]


def test_sinking_again_during_the_ascent_is_a_double_bounce_and_bar_drop() -> None:
    profile = rep_profile(1.3)
    bottom = int((1.5 + 1.0) * FPS)
    # Rise to depth 0.6, sink back to 0.9, then stand: a second recovery attempt.
    rise = [1.3 - 0.7 * i / 10 for i in range(10)]
    sink = [0.6 + 0.3 * i / 8 for i in range(8)]
    recover = [0.9 - 0.9 * i / 20 for i in range(20)]
    profile = profile[:bottom] + rise + sink + recover + [0.0] * int(1.5 * FPS)
    verdict, reasons, cards = codes(frames_from_profile(profile))
    assert verdict == "no_lift" and cards == ("blue",)
    assert any("second recovery" in r for r in reasons) and any("bar moved down" in r for r in reasons)


def test_a_step_between_start_and_finish_earns_a_yellow_card() -> None:
    frames = frames_from_profile(rep_profile(1.3))
    stepped = []
    for f in frames[int((1.5 + 2.0) * FPS) :]:
        assert f.keypoints is not None
        kp = f.keypoints.copy()
        kp[[L.LEFT_ANKLE, L.RIGHT_ANKLE], 0] += np.array([80.0, 0.0])  # the left foot moved 0.4 thighs
        stepped.append(dataclasses.replace(f, keypoints=kp))
    verdict, reasons, cards = codes(frames[: len(frames) - len(stepped)] + stepped)
    assert verdict == "no_lift" and cards == ("yellow",) and "foot moved" in reasons[0]


def test_someone_walking_away_is_not_an_attempt() -> None:
    # Hips fall relative to the legs as the figure shrinks, but the feet travel: walking, not squatting.
    frames = []
    for f in frames_from_profile(rep_profile(1.3)):
        assert f.keypoints is not None
        kp = f.keypoints.copy()
        kp[:, 0] += f.frame_index * 12.0  # crossing the frame
        frames.append(dataclasses.replace(f, keypoints=kp))
    referee = Referee()
    assert referee.run(frames) == []
    assert referee.rejected_reason is not None and "walking" in referee.rejected_reason


def test_a_tiny_person_in_the_background_is_not_the_lifter() -> None:
    frames = [dataclasses.replace(f, height=20_000) for f in frames_from_profile(rep_profile(1.3))]
    referee = Referee()
    assert referee.run(frames) == []
    assert referee.rejected_reason is not None and "too small" in referee.rejected_reason


def test_descending_before_the_squat_signal_is_a_missed_signal() -> None:
    frames = frames_from_profile(rep_profile(1.3))
    start = int(1.5 * FPS)
    early = Referee()
    early.command("squat", frames[start + 15].capture_us)  # signal half a second after the descent began
    (d,) = early.run(frames)
    assert d.verdict == "no_lift" and d.cards == ("yellow",)
    assert any("before the Squat signal" in r for r in d.reasons)
    on_time = Referee()
    on_time.command("squat", frames[start - 15].capture_us)
    (d,) = on_time.run(frames)
    assert d.verdict == "good" and d.cards == ()


def _steps_during(frames: list[PoseFrame], dx: float, both: bool = True) -> list[PoseFrame]:
    """The feet leave their places through the middle of the movement and come down elsewhere."""
    out = []
    n = len(frames)
    feet = (L.LEFT_ANKLE, L.RIGHT_ANKLE) if both else (L.RIGHT_ANKLE,)
    for i, f in enumerate(frames):
        assert f.keypoints is not None
        kp = f.keypoints.copy()
        phase = min(1.0, max(0.0, (i - 0.35 * n) / (0.3 * n)))  # 0 before the steps, 1 after them
        for k, foot in enumerate(feet):
            kp[foot, 0] += dx * min(1.0, max(0.0, 2 * phase - k * 0.5))  # one foot, then the other
        out.append(dataclasses.replace(f, keypoints=kp))
    return out


def test_a_walk_out_or_re_rack_is_not_an_attempt() -> None:
    frames = squat_session([0.9])
    (real,) = Referee().run(frames)  # the same movement with planted feet is an attempt
    assert real.verdict in ("good", "no_lift", "undecided")
    referee = Referee()
    assert referee.run(_steps_during(frames, dx=400.0)) == []
    assert referee.rejected_reason is not None and "steps, not an attempt" in referee.rejected_reason


def test_one_foot_moving_alone_or_a_shuffle_stays_an_attempt() -> None:
    frames = squat_session([1.3])
    (lone,) = Referee().run(_steps_during(frames, dx=150.0, both=False))  # a badly tracked far foot
    assert lone.depth.status == "below"
    (shuffle,) = Referee().run(_steps_during(frames, dx=40.0))  # 0.2 thigh: a shuffle, not a walk
    assert shuffle.depth.status == "below"
