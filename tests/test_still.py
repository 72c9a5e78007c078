"""The pose service repeats the last pose on every other frame in which the lifter stands still,
never in a squat, never twice in a row, and the calls stay the same."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from gpu_service.still import StillGate
from meetvar.judge import judge_video, poses_from_file
from referee.config import RefereeConfig
from referee.keypoints import PoseFrame

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "ingest" / "samples" / "rohanx01_squat.mp4"


def _standing(hip_y: float = 500.0, jitter: float = 0.0, knee_x: float = 410.0) -> np.ndarray:
    """33 keypoints of a side view (pixels): shoulder 300, hip ``hip_y``, knee (``knee_x``, 700),
    ankle 900."""
    kp = np.zeros((33, 4))
    kp[:, 3] = 1.0
    for i, (x, y) in {
        11: (400, 300),
        12: (402, 300),
        23: (400, hip_y),
        24: (402, hip_y),
        25: (knee_x, 700),
        26: (knee_x + 2, 700),
        27: (400, 900),
        28: (402, 900),
    }.items():
        kp[i, :2] = (x + jitter, y + jitter)
    return kp


def test_still_standing_lifter_skips_every_other_frame_only() -> None:
    gate = StillGate()
    skipped = []
    last = None
    for i in range(20):
        if gate.skip(i):
            skipped.append(i)
            continue
        gate.observe(i, _standing(jitter=0.5 * (i % 2)))
        last = i
    assert last == 19 or skipped[-1] == 19
    assert skipped == list(range(2, 20, 2))  # never two in a row; first two frames are always inferred


def test_movement_or_a_squat_is_never_skipped() -> None:
    gate = StillGate()
    for i in range(10):  # descending 6 px a frame (leg 600 px: 1 % is 6 px)
        assert not gate.skip(i)
        gate.observe(i, _standing(hip_y=500.0 + 6.0 * i))
    gate = StillGate()
    for i in range(10):  # perfectly still, but in the hole: thigh level, hip 10 px above the knee
        assert not gate.skip(i)
        gate.observe(i, _standing(hip_y=690.0, knee_x=700.0))


def test_lost_track_forgets_stillness() -> None:
    gate = StillGate()
    gate.observe(0, _standing())
    gate.observe(1, _standing())
    assert gate.skip(2)
    gate.reset()
    assert not gate.skip(2)


@pytest.fixture(scope="module")
def clip_poses() -> list[PoseFrame]:
    return list(poses_from_file(CLIP))


def test_reused_frames_on_the_bundled_clip_are_standing_and_isolated(clip_poses: list[PoseFrame]) -> None:
    reused = [p.extras.get("reused", 0.0) == 1.0 for p in clip_poses]
    assert 0.1 < sum(reused) / len(reused) < 0.5  # the lifter stands a good part of the clip
    assert not any(a and b for a, b in itertools.pairwise(reused))
    for prev, pose, flag in zip(clip_poses, clip_poses[1:], reused[1:], strict=False):
        if flag:
            assert pose.keypoints is not None and prev.keypoints is not None
            assert np.array_equal(pose.keypoints, prev.keypoints)
            assert pose.frame_index == prev.frame_index + 1 and pose.capture_us > prev.capture_us
            hip, knee = pose.keypoints[[23, 24], 1].mean(), pose.keypoints[[25, 26], 1].mean()
            assert knee - hip > 0.5 * abs(pose.keypoints[[27, 28], 1].mean() - knee)  # well above parallel


def test_calls_match_judging_every_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = judge_video(CLIP)
    import gpu_service.blazepose as bp

    original = bp.BlazePoseTracker.__init__

    def every_frame(self: bp.BlazePoseTracker, *a: object, **k: object) -> None:
        original(self, *a, **{**k, "skip_still": False})  # type: ignore[arg-type]

    monkeypatch.setattr(bp.BlazePoseTracker, "__init__", every_frame)
    full = judge_video(CLIP, config=RefereeConfig())
    assert len(fast["attempts"]) == len(full["attempts"]) == 2
    for a, b in zip(fast["attempts"], full["attempts"], strict=True):  # type: ignore[call-overload]
        assert a["depth"]["status"] == b["depth"]["status"]
        # The bottom is the deepest re-measured frame (every other frame near the bottom): ±2 frames.
        assert abs(a["bottom_s"] - b["bottom_s"]) < 0.1
        assert abs(a["depth"]["margin_cm"] - b["depth"]["margin_cm"]) < 0.5
