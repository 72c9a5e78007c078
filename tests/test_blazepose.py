"""BlazePose tracker on the bundled squat clip: the person is found and tracked, the joints sit where a
squat puts them, the detector only runs to acquire the track, and the output is bit-reproducible."""

from __future__ import annotations

import json
import math
import pathlib
import shutil

import av
import cv2
import numpy as np
import pytest

from gpu_service.blazepose import DEFAULT_MODELS_DIR, BlazePoseTracker, ModelFiles, _warp, model_files
from referee.keypoints import NUM_BLAZEPOSE_LANDMARKS, PoseFrame
from referee.keypoints import BlazePoseLandmark as L

CLIP = pathlib.Path(__file__).resolve().parent.parent / "ingest" / "samples" / "rohanx01_squat.mp4"
STAND = (0.5, 1.5)  # seconds: standing tall before the first rep
BOTTOM = (9.5, 11.5)  # seconds: descent, bottom (~10.5 s) and start of the ascent of the first rep

Frame = tuple[int, int, np.ndarray]  # (capture_us, frame_index, rgb)

# Reference landmarks (x, y pixels of the 33 points, rounded to 0.1 px) from MediaPipe itself
# (mediapipe==0.10.21, mp.solutions.pose.Pose(model_complexity=1, smooth_landmarks=False)) on the same
# PyAV-decoded frames. STATIC: static_image_mode=True, keyed by frame index (detector + landmarks on
# each frame). TRACKED: static_image_mode=False over the BOTTOM window fed at 33333 us steps (as the
# solution API stamps frames), keyed by position in that window.
# fmt: off
MEDIAPIPE_STATIC: dict[int, list[float]] = {
    30: [
        336.3, 400.7, 336.8, 389.1, 336.3, 388.6, 335.7, 387.9, 333.4, 387.9, 330.4, 386.5, 327.1, 384.9,
        320.8, 384.5, 310.1, 381.5, 326.3, 409.8, 323.0, 408.6, 300.5, 438.9, 261.5, 431.1, 291.3, 518.0,
        245.4, 497.9, 295.7, 572.5, 264.9, 413.4, 299.5, 590.5, 263.7, 394.9, 300.4, 588.3, 260.5, 390.8,
        296.9, 581.0, 261.9, 397.1, 286.9, 605.0, 266.3, 607.7, 278.4, 718.0, 267.0, 726.4, 262.9, 823.1,
        253.9, 843.9, 252.8, 847.1, 240.7, 869.6, 315.1, 847.6, 306.3, 874.0
    ],
    300: [
        367.6, 558.1, 364.5, 546.9, 363.9, 546.5, 363.2, 546.0, 362.0, 545.7, 360.3, 544.7, 358.3, 543.8,
        346.6, 545.7, 339.7, 545.4, 361.4, 566.1, 358.3, 564.1, 302.3, 579.3, 305.5, 600.8, 287.4, 572.2,
        281.5, 671.2, 287.3, 544.1, 308.0, 607.7, 281.7, 535.7, 311.9, 597.0, 289.4, 544.1, 311.2, 588.0,
        289.5, 544.6, 310.3, 592.5, 237.2, 704.0, 217.4, 722.1, 333.4, 726.8, 330.5, 771.8, 281.4, 826.2,
        273.3, 870.9, 260.3, 836.3, 251.8, 890.5, 313.7, 850.2, 317.2, 900.7
    ],
    315: [
        370.7, 590.5, 365.1, 579.3, 364.1, 578.7, 363.0, 578.1, 363.6, 579.9, 361.7, 579.6, 359.7, 579.3,
        345.8, 580.7, 339.8, 581.8, 365.5, 597.9, 364.1, 597.1, 311.8, 619.9, 301.8, 640.1, 304.9, 665.6,
        287.0, 712.8, 317.0, 629.1, 316.4, 646.3, 318.1, 620.6, 318.7, 630.2, 311.0, 609.2, 314.6, 627.9,
        321.6, 619.6, 313.3, 633.7, 234.0, 735.6, 218.9, 754.4, 336.4, 731.3, 335.2, 781.2, 289.4, 816.0,
        275.1, 874.8, 268.6, 828.4, 253.7, 893.9, 320.3, 841.0, 321.1, 899.8
    ],
}
MEDIAPIPE_TRACKED: dict[int, list[float]] = {
    0: [
        361.6, 504.4, 361.8, 492.2, 361.3, 491.8, 360.5, 491.3, 359.4, 491.7, 357.2, 490.8, 354.9, 489.9,
        343.1, 489.6, 338.3, 488.7, 354.0, 514.2, 351.0, 512.7, 300.4, 525.6, 294.1, 532.0, 283.1, 547.0,
        268.2, 597.4, 286.0, 518.3, 297.3, 529.9, 283.2, 514.3, 300.5, 519.1, 285.2, 494.5, 298.7, 514.0,
        291.0, 510.0, 297.1, 517.9, 235.7, 662.2, 217.7, 678.7, 322.7, 723.9, 324.7, 754.6, 280.0, 831.7,
        271.9, 863.9, 261.3, 842.1, 249.6, 886.3, 323.1, 855.7, 322.3, 898.2
    ],
    12: [
        365.2, 548.2, 363.5, 537.9, 362.9, 537.6, 362.1, 537.0, 360.8, 537.1, 358.5, 536.4, 355.9, 535.6,
        344.5, 536.8, 335.3, 536.7, 358.2, 557.8, 355.0, 556.8, 299.7, 572.8, 297.6, 593.0, 285.8, 553.6,
        280.5, 660.2, 273.9, 518.9, 304.7, 601.0, 265.4, 509.4, 308.4, 587.8, 271.6, 507.8, 306.9, 577.9,
        276.6, 512.6, 306.1, 581.4, 237.2, 696.5, 221.1, 717.5, 335.6, 729.1, 333.5, 771.7, 277.6, 830.6,
        275.4, 870.1, 258.1, 838.4, 252.9, 888.2, 317.0, 850.8, 320.2, 897.1
    ],
    24: [
        370.6, 584.1, 368.1, 574.4, 367.0, 574.0, 365.5, 573.5, 366.4, 574.3, 364.3, 573.8, 361.8, 573.2,
        345.9, 573.0, 338.5, 574.0, 363.4, 593.8, 361.6, 592.8, 306.0, 609.3, 300.9, 628.2, 293.3, 604.9,
        287.3, 704.0, 291.8, 584.0, 317.0, 640.1, 286.8, 577.3, 320.2, 627.8, 291.0, 575.9, 314.8, 620.6,
        294.0, 580.0, 314.0, 624.8, 235.6, 726.4, 214.4, 746.1, 335.1, 728.8, 329.0, 771.9, 287.9, 816.4,
        276.7, 873.6, 268.7, 827.8, 255.1, 891.9, 321.0, 838.5, 320.0, 905.9
    ],
    36: [
        367.1, 586.9, 361.5, 574.7, 360.7, 574.1, 359.8, 573.5, 359.2, 574.3, 357.0, 573.5, 354.6, 572.9,
        344.4, 574.9, 337.0, 574.4, 362.4, 594.8, 359.5, 593.1, 303.5, 610.9, 304.6, 631.2, 278.1, 622.6,
        277.7, 683.4, 289.3, 609.5, 309.4, 644.4, 285.9, 605.1, 310.9, 639.6, 292.5, 603.4, 312.9, 628.6,
        295.1, 606.2, 310.3, 632.3, 228.6, 727.9, 210.3, 748.3, 329.3, 734.0, 332.1, 770.6, 279.4, 830.8,
        274.4, 875.6, 262.9, 836.0, 252.2, 894.2, 320.3, 851.5, 318.3, 900.5
    ],
    48: [
        359.2, 453.8, 355.4, 441.0, 354.5, 440.3, 353.6, 439.4, 353.9, 440.4, 352.1, 439.4, 350.1, 438.2,
        339.5, 438.2, 333.3, 438.4, 350.9, 461.1, 348.3, 460.3, 302.4, 484.7, 289.0, 486.2, 303.8, 527.7,
        258.6, 551.0, 316.0, 491.3, 300.4, 482.5, 315.4, 486.4, 302.0, 466.2, 319.2, 479.9, 298.5, 462.9,
        319.7, 481.4, 298.2, 468.8, 245.0, 633.1, 225.9, 641.6, 305.2, 725.3, 307.7, 746.7, 278.8, 838.6,
        268.4, 868.8, 262.7, 847.1, 249.0, 892.0, 325.2, 852.7, 322.5, 903.0
    ],
    59: [
        338.0, 415.9, 334.3, 403.0, 333.4, 402.5, 332.5, 402.0, 332.8, 402.7, 330.8, 402.1, 328.5, 401.6,
        319.1, 404.2, 309.9, 404.4, 330.7, 424.9, 328.8, 424.9, 304.8, 451.9, 272.0, 453.6, 288.4, 536.8,
        248.4, 513.5, 285.6, 591.3, 282.7, 435.2, 286.7, 610.1, 285.0, 415.1, 285.1, 607.6, 282.0, 412.5,
        282.9, 603.8, 282.9, 418.2, 275.3, 614.0, 253.4, 615.3, 286.1, 725.7, 276.9, 742.0, 278.9, 836.4,
        262.1, 870.7, 268.9, 849.7, 248.9, 897.4, 323.5, 850.9, 317.1, 911.7
    ],
}
MEDIAPIPE_STATIC_WORLD: dict[int, list[float]] = {  # world landmarks (metres, rounded to 1 mm)
    315: [
        0.459, -0.445, -0.130, 0.445, -0.498, -0.131, 0.445, -0.498, -0.129, 0.445, -0.499, -0.130, 0.437,
        -0.488, -0.159, 0.438, -0.488, -0.159, 0.439, -0.490, -0.158, 0.339, -0.523, -0.071, 0.310, -0.488,
        -0.211, 0.414, -0.431, -0.106, 0.406, -0.419, -0.144, 0.236, -0.395, 0.061, 0.198, -0.310, -0.262,
        0.191, -0.298, 0.234, 0.174, -0.125, -0.347, 0.269, -0.414, 0.300, 0.234, -0.285, -0.385, 0.274,
        -0.426, 0.310, 0.253, -0.298, -0.397, 0.293, -0.430, 0.313, 0.238, -0.325, -0.412, 0.279, -0.417,
        0.304, 0.231, -0.298, -0.391, 0.017, -0.023, 0.115, -0.017, 0.024, -0.114, 0.317, 0.014, 0.309,
        0.340, 0.110, -0.200, 0.206, 0.270, 0.449, 0.146, 0.421, -0.171, 0.199, 0.308, 0.454, 0.127, 0.459,
        -0.167, 0.282, 0.366, 0.476, 0.214, 0.494, -0.199
    ],
}
# fmt: on


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
    reused = sum(p.extras.get("reused", 0.0) == 1.0 for p in poses)
    assert tracker.landmark_runs + reused == len(poses) and tracker.reused_frames == reused
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


def test_matches_mediapipe_static_mode(clip_frames: dict[str, list[Frame]]) -> None:
    """Detector, ROI, crop, heatmap refinement and projection reproduce MediaPipe to well under a pixel
    (ONNX Runtime vs XNNPACK rounding is the only difference left)."""
    by_index = {index: rgb for window in clip_frames.values() for _, index, rgb in window}
    tracker = BlazePoseTracker()
    for index, ref in MEDIAPIPE_STATIC.items():
        tracker.reset()
        pose = tracker.process(by_index[index], 0, index)
        assert pose.keypoints is not None
        err = np.linalg.norm(pose.keypoints[:, :2] - np.reshape(ref, (-1, 2)), axis=1)
        assert err.mean() < 0.5 and err.max() < 2.0, f"frame {index}: {err.round(2)}"
        if index in MEDIAPIPE_STATIC_WORLD:
            assert pose.world is not None
            world_err = np.linalg.norm(
                pose.world - np.reshape(MEDIAPIPE_STATIC_WORLD[index], (-1, 3)), axis=1
            )
            assert world_err.mean() < 0.005 and world_err.max() < 0.02, f"frame {index}: {world_err.round(3)}"


def test_matches_mediapipe_tracking(clip_frames: dict[str, list[Frame]]) -> None:
    """Tracking feeds each frame's landmarks into the next crop, which amplifies rounding noise (a 1e-5
    nudge of the alignment points moves occluded arms by pixels), so only the trunk and legs, which the
    referee uses, are held to a few pixels."""
    tracker = BlazePoseTracker()
    frames = clip_frames["bottom"]
    body = [int(j) for j in (L.LEFT_SHOULDER, L.RIGHT_SHOULDER)] + list(range(int(L.LEFT_HIP), 33))
    for k, (_, index, rgb) in enumerate(frames):
        pose = tracker.process(rgb, (k + 1) * 33_333, index)
        if k in MEDIAPIPE_TRACKED:
            assert pose.keypoints is not None
            ref = np.reshape(MEDIAPIPE_TRACKED[k], (-1, 2))
            err = np.linalg.norm(pose.keypoints[body, :2] - ref[body], axis=1)
            assert err.mean() < 4.0 and err.max() < 15.0, f"window frame {k}: {err.round(1)}"


def _reference_warp(img: np.ndarray, matrix: np.ndarray, size: int, replicate: bool) -> np.ndarray:
    """OpenCV 4 warpPerspective bilinear semantics, written out: 1/32-pixel source coordinates, 15-bit
    fixed-point weights, out-of-image taps replicated or black."""
    inv = np.linalg.inv(matrix)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    den = inv[2, 0] * xs + inv[2, 1] * ys + inv[2, 2]
    fx = np.rint((inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]) * 32.0 / den).astype(np.int64)
    fy = np.rint((inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]) * 32.0 / den).astype(np.int64)
    sx, sy, ax, ay = fx >> 5, fy >> 5, fx & 31, fy & 31
    h, w = img.shape[:2]
    acc = np.zeros((size, size, img.shape[2]), dtype=np.int64)
    for dy, dx, weight in (
        (0, 0, (32 - ax) * (32 - ay)),
        (0, 1, ax * (32 - ay)),
        (1, 0, (32 - ax) * ay),
        (1, 1, ax * ay),
    ):
        cx, cy = sx + dx, sy + dy
        px = img[np.clip(cy, 0, h - 1), np.clip(cx, 0, w - 1)].astype(np.int64)
        if not replicate:
            px = np.where(((cx >= 0) & (cx < w) & (cy >= 0) & (cy < h))[..., None], px, 0)
        acc += px * (weight * 32)[..., None]
    return np.clip((acc + (1 << 14)) >> 15, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("replicate", [True, False])
def test_crop_uses_opencv4_fixed_point_bilinear(replicate: bool) -> None:
    """The crop must not depend on which OpenCV is installed (OpenCV 5's warpPerspective rounds
    differently from the OpenCV 4 inside MediaPipe)."""
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, (90, 70, 3), dtype=np.uint8)
    cx, cy, side, rot, size = 40.0, 30.0, 110.0, 0.7, 48
    border = cv2.BORDER_REPLICATE if replicate else cv2.BORDER_CONSTANT
    got = _warp(img, cx, cy, side, side, rot, size, border)
    src = cv2.boxPoints(((cx, cy), (side, side), rot * 180.0 / math.pi)).astype(np.float32)
    dst = np.array([[0, size], [0, 0], [size, 0], [size, size]], dtype=np.float32)
    ref = _reference_warp(img, cv2.getPerspectiveTransform(src, dst), size, replicate)
    diff = np.abs(got.astype(np.int64) - ref)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    if not replicate:
        assert (got == 0).all(axis=2).any()  # part of the rect lies outside the image: black border
