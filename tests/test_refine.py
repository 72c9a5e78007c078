"""Re-measuring the bottom with a crop ensemble: which frames, how they travel, how the referee uses them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from gpu_service.blazepose import LANDMARK, LM_SIZE, BlazePoseTracker
from gpu_service.refine import FLIP_PAIRS, BottomWatch, RefineSettings, flip_outputs
from meetvar.cli import bundled_clip
from meetvar.judge import frames_for_pose
from referee.config import RefereeConfig
from referee.keypoints import BlazePoseLandmark as L
from referee.keypoints import PoseFrame
from referee.referee import Referee
from tests.synthetic import FPS, THIGH_PX, squat_session

CENTRES = RefereeConfig(surface_offset_thigh=0.0)
AUX = np.array([[0.5, 0.5, 0.0], [0.5, 0.3, 0.0]])


def _lowered(frame: PoseFrame, px: float, spread_px: float = 4.0) -> PoseFrame:
    """The frame re-measured: hips ``px`` lower, as an ensemble of 5 crops with this depth spread."""
    assert frame.keypoints is not None
    kp = frame.keypoints.copy()
    kp[[L.LEFT_HIP, L.RIGHT_HIP], 1] += px
    extras = {"refined": 5.0, "depth_spread_left_px": spread_px, "depth_spread_right_px": spread_px}
    return dataclasses.replace(frame, keypoints=kp, extras={**frame.extras, **extras})


def test_the_referee_judges_the_bottom_on_the_remeasured_frames() -> None:
    frames = squat_session([1.0])
    (plain,) = Referee(config=CENTRES).run(frames)
    bottom = next(i for i, f in enumerate(frames) if f.capture_us == plain.bottom_us)
    near = [f for f in frames if abs(f.capture_us - plain.bottom_us) <= 300_000]
    carrier = bottom + int(0.3 * FPS) + 1  # they arrive once the bottom has passed, on a later frame
    shifted = list(frames)
    shifted[carrier] = dataclasses.replace(
        frames[carrier], refined=tuple(_lowered(f, 0.1 * THIGH_PX) for f in near)
    )
    (refined,) = Referee(config=CENTRES).run(shifted)
    assert plain.depth.measured == "tracker poses"
    assert refined.depth.measured == f"crop ensemble, {len(near)} bottom frames"
    assert plain.depth.margin_thigh is not None and refined.depth.margin_thigh is not None
    assert abs(refined.depth.margin_thigh - plain.depth.margin_thigh - 0.1) < 0.01
    # Five crops agreeing within 4 px make a tighter interval than the tracker's own noise allowance.
    assert refined.depth.uncertainty_thigh is not None and plain.depth.uncertainty_thigh is not None
    assert refined.depth.uncertainty_thigh < plain.depth.uncertainty_thigh
    assert refined.depth.status == "below" and refined.verdict == "good"


def test_remeasured_frames_survive_the_poses_topic_json() -> None:
    frames = squat_session([1.0])
    carrier = dataclasses.replace(frames[50], refined=(_lowered(frames[40], 5.0), _lowered(frames[42], 5.0)))
    back = PoseFrame.from_json(carrier.to_json())
    assert [r.capture_us for r in back.refined] == [frames[40].capture_us, frames[42].capture_us]
    assert back.refined[0].keypoints is not None and carrier.refined[0].keypoints is not None
    assert np.array_equal(back.refined[0].keypoints, carrier.refined[0].keypoints)
    assert back.refined[0].extras == carrier.refined[0].extras
    assert "refined" not in frames[50].to_json()  # ordinary frames carry nothing more


def test_bottom_watch_picks_the_window_around_each_dip_once() -> None:
    frames = squat_session([1.1, 1.1])
    watch = BottomWatch(RefineSettings(window_s=0.3, stride=2))
    handed: list[tuple[int, list[int]]] = []
    for f in frames:
        todo = watch.push(f, "image", AUX)
        if todo:
            handed.append((f.frame_index, [b.pose.frame_index for b in todo]))
    assert len(handed) == 2, handed
    for at, chosen in handed:
        deepest = chosen[len(chosen) // 2]
        assert all(abs(i - deepest) <= 0.3 * FPS for i in chosen)
        assert all((i - deepest) % 2 == 0 for i in chosen)
        assert len(chosen) >= 8
        assert at - deepest >= 0.3 * FPS  # only once the bottom has passed
    assert watch.flush() == []


def test_a_stream_that_ends_at_the_bottom_still_gets_its_remeasure() -> None:
    frames = squat_session([1.1])
    watch = BottomWatch()
    cut = len(frames) // 2  # stream stops at the bottom
    assert not any(watch.push(f, "image", AUX) for f in frames[:cut])
    tail = watch.flush()
    assert tail and max(b.pose.frame_index for b in tail) == cut - 1


def test_flip_outputs_swaps_sides_and_mirrors_x() -> None:
    rng = np.random.default_rng(0)
    out = {
        "landmarks": rng.uniform(0, LM_SIZE, (1, 195)).astype(np.float32),
        "world_landmarks": rng.normal(size=(1, 117)).astype(np.float32),
        "heatmap": rng.normal(size=(1, 64, 64, 39)).astype(np.float32),
        "pose_flag": np.ones((1, 1), np.float32),
        "segmentation": rng.normal(size=(1, LM_SIZE, LM_SIZE, 1)).astype(np.float32),
    }
    back = flip_outputs(flip_outputs(out, LM_SIZE), LM_SIZE)
    for name in out:
        assert np.allclose(back[name], out[name], atol=1e-4), name
    once = flip_outputs(out, LM_SIZE)
    a, b = FLIP_PAIRS[11]  # hips
    lm, lm1 = out["landmarks"].reshape(39, 5), once["landmarks"].reshape(39, 5)
    assert np.isclose(lm1[a, 0], LM_SIZE - lm[b, 0]) and np.isclose(lm1[a, 1], lm[b, 1])
    assert np.allclose(once["segmentation"][0, :, 0, 0], out["segmentation"][0, :, -1, 0])


@pytest.fixture(scope="module")
def bottom_frames() -> list[tuple[int, int, object]]:
    """Frames 250–345 of the bundled clip: its first rep's bottom is at frame ~315."""
    out: list[tuple[int, int, object]] = []
    with frames_for_pose(Path(bundled_clip())) as frames:
        for index, capture_us, planes in frames:
            if index >= 250:
                out.append((index, capture_us, planes))
            if index >= 345:
                break
    return out


def test_a_mirrored_crop_gives_the_same_landmarks_back(bottom_frames: list[tuple[int, int, object]]) -> None:
    tracker = BlazePoseTracker()
    for index, capture_us, planes in bottom_frames[:40]:
        tracker.process(planes, capture_us, index)  # type: ignore[arg-type]
    pending = tracker.prepare(bottom_frames[40][2], bottom_frames[40][1], bottom_frames[40][0])  # type: ignore[arg-type]
    assert pending.tensor is not None and pending.roi is not None
    plain = tracker.backend.run(LANDMARK, pending.tensor)
    mirrored = flip_outputs(tracker.backend.run(LANDMARK, pending.tensor[:, :, ::-1, :].copy()), LM_SIZE)
    tracker.finish(pending, plain)
    a = plain["landmarks"].reshape(39, 5)[[L.LEFT_HIP, L.RIGHT_HIP, L.LEFT_KNEE, L.RIGHT_KNEE], :2]
    b = mirrored["landmarks"].reshape(39, 5)[[L.LEFT_HIP, L.RIGHT_HIP, L.LEFT_KNEE, L.RIGHT_KNEE], :2]
    assert float(np.max(np.abs(a - b))) < 8.0  # crop pixels of 256: the model is nearly mirror-symmetric


def test_the_tracker_remeasures_the_real_bottom(bottom_frames: list[tuple[int, int, object]]) -> None:
    tracker = BlazePoseTracker()
    poses = [tracker.process(p, t, i) for i, t, p in bottom_frames]  # type: ignore[arg-type]
    carried = [(p.frame_index, r) for p in poses for r in p.refined]
    assert carried, "no re-measured frames around the bottom"
    by_index = {p.frame_index: p for p in poses}
    for at, r in carried:
        assert at > r.frame_index  # carried by a later frame
        assert r.extras["refined"] >= 3 and r.extras["depth_spread_right_px"] >= 0.0
        first = by_index[r.frame_index]
        assert first.keypoints is not None and r.keypoints is not None
        # Same person, same joints: the ensemble moves a hip or knee by a few pixels, not across the leg.
        joints = [L.RIGHT_HIP, L.RIGHT_KNEE]
        assert float(np.max(np.abs(first.keypoints[joints, :2] - r.keypoints[joints, :2]))) < 25.0
    assert 300 <= int(np.median([r.frame_index for _, r in carried])) <= 330
    assert tracker.refine_runs >= 3 * len(carried)


def test_a_later_start_drops_frames_but_keeps_capture_times() -> None:
    """``evaluate --repeat``: the clip as if the camera had started two frames later."""
    from meetvar.judge import poses_from_file

    clip = Path(bundled_clip())
    with frames_for_pose(clip) as frames:
        times = [t for _, (_, t, _) in zip(range(3), frames, strict=False)]
    later = poses_from_file(clip, skip_frames=2)
    first = next(later)
    later.close()  # type: ignore[attr-defined]
    assert first.capture_us == times[2] and first.frame_index == 0
