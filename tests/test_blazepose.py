"""BlazePose tracker on the bundled squat clip: the person is found and tracked, the joints sit where a
squat puts them, the detector only runs to acquire the track, and the output is bit-reproducible."""

from __future__ import annotations

import json
import pathlib
import shutil

import av
import numpy as np
import pytest

from gpu_service.blazepose import DEFAULT_MODELS_DIR, BlazePoseTracker, ModelFiles, model_files
from referee.keypoints import NUM_BLAZEPOSE_LANDMARKS, PoseFrame
from referee.keypoints import BlazePoseLandmark as L

CLIP = pathlib.Path(__file__).resolve().parent.parent / "ingest" / "samples" / "rohanx01_squat.mp4"
STAND = (0.5, 1.5)  # seconds: standing tall before the first rep
BOTTOM = (9.5, 11.5)  # seconds: descent, bottom (~10.5 s) and start of the ascent of the first rep

Frame = tuple[int, int, np.ndarray]  # (capture_us, frame_index, rgb)


@pytest.fixture(scope="module")
def clip_frames() -> dict[str, list[Frame]]:
    windows: dict[str, list[Frame]] = {"stand": [], "bottom": []}
    with av.open(str(CLIP)) as container:
        stream = container.streams.video[0]
        for index, frame in enumerate(container.decode(stream)):
            assert frame.pts is not None and stream.time_base is not None
            t = float(frame.pts * stream.time_base)
            for name, (lo, hi) in (("stand", STAND), ("bottom", BOTTOM)):
                if lo <= t < hi:
                    windows[name].append((round(t * 1e6), index, frame.to_ndarray(format="rgb24")))
            if t >= BOTTOM[1]:
                break
    assert len(windows["stand"]) == 30 and len(windows["bottom"]) == 60
    return windows


def run(tracker: BlazePoseTracker, frames: list[Frame]) -> list[PoseFrame]:
    return [tracker.process(rgb, t_us, index) for t_us, index, rgb in frames]


@pytest.fixture(scope="module")
def bottom_run(clip_frames: dict[str, list[Frame]]) -> tuple[BlazePoseTracker, list[PoseFrame]]:
    tracker = BlazePoseTracker(threads=1)
    return tracker, run(tracker, clip_frames["bottom"])


def ys(pose: PoseFrame, *joints: L) -> float:
    assert pose.keypoints is not None
    return float(np.mean([pose.keypoints[j, 1] for j in joints]))


def test_person_tracked_on_every_frame_inside_the_image(
    clip_frames: dict[str, list[Frame]], bottom_run: tuple[BlazePoseTracker, list[PoseFrame]]
) -> None:
    _, poses = bottom_run
    height, width = clip_frames["bottom"][0][2].shape[:2]
    assert (width, height) == (608, 1080)
    for pose in poses:
        assert pose.keypoints is not None, f"no person on frame {pose.frame_index}"
        assert pose.keypoints.shape == (NUM_BLAZEPOSE_LANDMARKS, 4) and pose.keypoints.dtype == np.float64
        assert pose.world is not None and pose.world.shape == (NUM_BLAZEPOSE_LANDMARKS, 3)
        assert np.all(np.isfinite(pose.keypoints)) and np.all(np.isfinite(pose.world))
        x, y, vis = pose.keypoints[:, 0], pose.keypoints[:, 1], pose.keypoints[:, 3]
        assert np.all((x >= 0) & (x < width) & (y >= 0) & (y < height)), f"frame {pose.frame_index}"
        assert np.all((vis >= 0) & (vis <= 1))
        assert pose.score > 0.5
        assert (pose.width, pose.height, pose.model_id) == (width, height, BlazePoseTracker.MODEL_ID)
        # The lifter stands on the left half of the portrait frame; the mirror image is further right.
        assert ys(pose, L.LEFT_ANKLE, L.RIGHT_ANKLE) - ys(pose, L.LEFT_SHOULDER, L.RIGHT_SHOULDER) > 150
        assert pose.keypoints[L.LEFT_HIP, 0] < 0.6 * width


def test_detector_runs_only_to_acquire_the_track(
    bottom_run: tuple[BlazePoseTracker, list[PoseFrame]],
) -> None:
    tracker, poses = bottom_run
    assert tracker.detector_runs == 1
    assert tracker.landmark_runs == len(poses)
    assert [p.extras["detector_ran"] for p in poses] == [1.0] + [0.0] * (len(poses) - 1)
    assert {p.track_id for p in poses} == {0}


def test_squat_bottom_geometry(bottom_run: tuple[BlazePoseTracker, list[PoseFrame]]) -> None:
    _, poses = bottom_run
    hips = np.array([ys(p, L.LEFT_HIP, L.RIGHT_HIP) for p in poses])
    deepest = poses[int(np.argmax(hips))]
    # The hips travel down into the hole and come back up inside the window.
    assert hips.max() - hips[0] > 50.0
    assert hips.max() - hips[-1] > 20.0
    assert 10.2e6 <= deepest.capture_us <= 10.8e6
    knee = ys(deepest, L.LEFT_KNEE, L.RIGHT_KNEE)
    ankle = ys(deepest, L.LEFT_ANKLE, L.RIGHT_ANKLE)
    shoulder = ys(deepest, L.LEFT_SHOULDER, L.RIGHT_SHOULDER)
    shin = ankle - knee
    assert shin > 60.0
    assert abs(hips.max() - knee) < 0.3 * shin  # hip crease around knee height at the bottom
    assert shoulder < hips.max() < ankle
    # World landmarks: hip-centred metres, y down.
    assert deepest.world is not None
    hip_mid = (deepest.world[L.LEFT_HIP] + deepest.world[L.RIGHT_HIP]) / 2.0
    assert np.all(np.abs(hip_mid) < 0.05)
    assert deepest.world[L.LEFT_ANKLE, 1] > 0.2 and deepest.world[L.LEFT_SHOULDER, 1] < -0.2


def test_standing_geometry(clip_frames: dict[str, list[Frame]]) -> None:
    tracker = BlazePoseTracker()
    for pose in run(tracker, clip_frames["stand"]):
        shoulder = ys(pose, L.LEFT_SHOULDER, L.RIGHT_SHOULDER)
        hip = ys(pose, L.LEFT_HIP, L.RIGHT_HIP)
        knee = ys(pose, L.LEFT_KNEE, L.RIGHT_KNEE)
        ankle = ys(pose, L.LEFT_ANKLE, L.RIGHT_ANKLE)
        assert shoulder + 100 < hip and hip + 80 < knee and knee + 80 < ankle, f"frame {pose.frame_index}"
        assert pose.keypoints is not None
        legs_and_trunk = [L.LEFT_SHOULDER, L.RIGHT_SHOULDER, L.LEFT_HIP, L.RIGHT_HIP]
        legs_and_trunk += [L.LEFT_KNEE, L.RIGHT_KNEE, L.LEFT_ANKLE, L.RIGHT_ANKLE]
        order = [legs_and_trunk[i] for i in np.argsort(pose.keypoints[legs_and_trunk, 1])]
        assert set(order[:2]) == {L.LEFT_SHOULDER, L.RIGHT_SHOULDER}  # highest in the image
        assert set(order[-2:]) == {L.LEFT_ANKLE, L.RIGHT_ANKLE}  # lowest
    assert tracker.detector_runs == 1


def test_two_runs_are_bit_identical(
    clip_frames: dict[str, list[Frame]], bottom_run: tuple[BlazePoseTracker, list[PoseFrame]]
) -> None:
    _, first = bottom_run
    tracker = BlazePoseTracker()
    frames = clip_frames["bottom"][:20]
    second = run(tracker, frames)
    tracker.reset()
    third = run(tracker, frames)
    for a, b, c in zip(first, second, third, strict=False):
        assert a.keypoints is not None and b.keypoints is not None and c.keypoints is not None
        assert np.array_equal(a.keypoints, b.keypoints) and np.array_equal(a.keypoints, c.keypoints)
        assert a.world is not None and b.world is not None
        assert np.array_equal(a.world, b.world)
        assert a.score == b.score == c.score
        assert a.to_json() == b.to_json()
    assert tracker.detector_runs == 1  # reset() also zeroes the counters


def test_empty_frame_has_no_person_and_retries_detection() -> None:
    tracker = BlazePoseTracker()
    black = np.zeros((360, 640, 3), dtype=np.uint8)
    for i in range(3):
        pose = tracker.process(black, i * 33_333, i)
        assert pose.keypoints is None and pose.world is None and pose.track_id is None
        assert not pose.has_person
    assert tracker.detector_runs == 3
    with pytest.raises(ValueError):
        tracker.process(black[:, :, 0], 0, 0)


def test_model_files_and_manifest() -> None:
    files = model_files()
    assert files.models_dir == DEFAULT_MODELS_DIR
    files.verify()
    manifest = files.manifest
    assert manifest["source"]["package"] == "mediapipe" and manifest["source"]["version"] == "0.10.21"
    assert files.model_id == BlazePoseTracker.MODEL_ID
    for model in manifest["models"].values():
        assert model["verification"]["max_abs_diff"] < 0.05
    for name in ("LICENSE", "NOTICE.md"):
        assert (DEFAULT_MODELS_DIR / name).is_file()
    assert "Apache License" in (DEFAULT_MODELS_DIR / "LICENSE").read_text()


def test_missing_or_altered_models_fail_clearly(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"convert_blazepose\.py"):
        BlazePoseTracker(tmp_path)
    for name in ("pose_detection.onnx", "pose_landmark_full.onnx", "manifest.json"):
        shutil.copyfile(DEFAULT_MODELS_DIR / name, tmp_path / name)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["models"]["pose_detection"]["sha256"] = "0" * 64
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RuntimeError, match="sha256"):
        ModelFiles.locate(tmp_path).verify()
