"""The lifter, and only the lifter: which detected person the pose tracker follows."""

from __future__ import annotations

import av
import cv2
import numpy as np

from gpu_service.blazepose import BlazePoseTracker
from gpu_service.lifter import Candidate, LastSeen, choose_lifter
from meetvar.cli import bundled_clip


def test_first_acquisition_takes_the_most_confident_person() -> None:
    sharp, blurred = Candidate(0.5, 0.5, 0.2, 0.95), Candidate(0.9, 0.4, 0.3, 0.6)
    assert choose_lifter([blurred, sharp], None, now_us=0) == 1
    assert choose_lifter([], None, now_us=0) is None


def test_a_recently_hidden_lifter_is_found_where_they_were() -> None:
    lifter_back, confident_spotter = Candidate(0.52, 0.5, 0.25, 0.6), Candidate(0.2, 0.5, 0.35, 0.95)
    last = LastSeen(0.5, 0.5, 0.3, capture_us=1_000_000)
    assert choose_lifter([confident_spotter, lifter_back], last, now_us=2_000_000) == 1
    # Long gone: start again from the most confident person.
    assert choose_lifter([confident_spotter, lifter_back], last, now_us=9_000_000) == 0


def _frame_at(seconds: float) -> np.ndarray:
    with av.open(str(bundled_clip())) as c:
        c.seek(int(seconds * 1e6))
        for frame in c.decode(video=0):
            if frame.time is not None and frame.time >= seconds:
                return frame.to_ndarray(format="rgb24")
    raise AssertionError("clip too short")


def test_the_tracker_keeps_its_person_when_someone_more_visible_appears() -> None:
    squatting, standing = _frame_at(10.5), _frame_at(1.0)
    h, w = squatting.shape[:2]
    small = cv2.resize(standing, (int(w * 0.85), int(h * 0.85)))

    def canvas(left: np.ndarray | None, right: bool) -> np.ndarray:
        img = np.zeros((h, 2 * w, 3), dtype=np.uint8)
        if left is not None:
            img[:, :w] = left
        if right:
            img[h - small.shape[0] :, w + 40 : w + 40 + small.shape[1]] = small
        return img

    both = canvas(squatting, right=True)
    # A fresh tracker takes the squatting person on the left: the detector is surest of them.
    fresh = BlazePoseTracker().process(both, 0, 0)
    assert fresh.keypoints is not None and float(fresh.keypoints[[23, 24], 0].mean()) < w

    # A tracker that has been following the person on the right, lost for a moment (a black frame),
    # finds that person again although the detector is now surer of the other one.
    tracker = BlazePoseTracker()
    first = tracker.process(canvas(None, right=True), 0, 0)
    assert first.keypoints is not None and float(first.keypoints[[23, 24], 0].mean()) > w
    lost = tracker.process(np.zeros_like(both), 33_000, 1)
    assert lost.keypoints is None
    again = tracker.process(both, 66_000, 2)
    assert again.keypoints is not None and float(again.keypoints[[23, 24], 0].mean()) > w
    assert tracker.detector_runs >= 2
