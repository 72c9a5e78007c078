"""``meetvar judge VIDEO``: the streaming pipeline's own stages, run without a broker.

Frames go through the same normalise→chunk→decode path as live video (``ingest.normalize``'s chunks,
decoded by ``gpu_service.pose_input.decode_for_pose`` as the pose worker does), then the same pose
tracker and the same referee, so a recorded video and its live stream are judged identically.

Speed: the video half (source decode, x264 chunk encode, chunk decode) runs in a child process
(:mod:`meetvar.frame_feed`) and this process runs only the pose model and the referee, so the two
halves use both cores of a small machine; threads cannot, because PyAV holds the GIL while it
codes. The tracker takes the decoder's YUV planes and samples its crop from them instead of
converting every frame to RGB, and repeats the pose on every other frame in which the lifter stands
still (``gpu_service.still``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from gpu_service.blazepose import BlazePoseTracker
from meetvar.errors import NoPersonError
from meetvar.frame_feed import FrameFeed, frames_in_subprocess
from referee.config import RefereeConfig
from referee.keypoints import PoseFrame
from referee.referee import Referee


def frames_for_pose(path: Path, *, start_us: int = 0) -> FrameFeed:
    """``(frame_index, capture_us, planes)`` of every frame, decoded from the chunks a live stream of
    this file would carry (by a child process, see :mod:`meetvar.frame_feed`)."""
    return frames_in_subprocess(path, start_us=start_us)


def poses_from_file(
    path: Path,
    *,
    threads: int = 1,
    backend: str | None = None,
    skip_still: bool = True,
    skip_frames: int = 0,
) -> Iterator[PoseFrame]:
    """Poses of every frame; ``skip_frames`` drops the first frames, as if the camera had started that
    much later (capture times are kept, so calls stay comparable): the repeatability measure."""
    with frames_for_pose(path) as frames:  # the decoding child starts now, while the models load
        tracker = BlazePoseTracker(threads=threads, backend=backend, skip_still=skip_still)
        for index, capture_us, planes in frames:
            if index < skip_frames:
                continue
            yield tracker.process(planes, capture_us, index - skip_frames)
        if tail := tracker.flush_refined():
            # The stream ended within a bottom's window: its re-measured frames ride on no new frame.
            yield PoseFrame.carrying(tail)


def judge_video(
    path: Path,
    *,
    threads: int = 1,
    config: RefereeConfig | None = None,
    backend: str | None = None,
    skip_still: bool = True,
    skip_frames: int = 0,
) -> dict[str, object]:
    started = time.perf_counter()
    referee = Referee(origin_us=0, config=config)
    decisions = []
    n = seen = 0
    first_us = last_us = 0
    for pose in poses_from_file(
        path, threads=threads, backend=backend, skip_still=skip_still, skip_frames=skip_frames
    ):
        if pose.is_carrier:
            referee.amend(pose.refined)
            continue
        if n == 0:
            first_us = pose.capture_us
        last_us = pose.capture_us
        n += 1
        seen += pose.has_person
        if (d := referee.push(pose)) is not None:
            decisions.append(d)
    if (d := referee.finish()) is not None:
        decisions.append(d)
    if n and not seen:
        raise NoPersonError(
            f"no person found in any of the {n} frames of {path} — check that the camera shows the lifter"
        )
    fps = (n - 1) / ((last_us - first_us) / 1e6) if n > 1 and last_us > first_us else 0.0
    return {
        "video": str(path),
        "fps": round(fps, 3),
        "frames": n,
        "processing_s": round(time.perf_counter() - started, 3),
        "attempts": [d.to_json() for d in decisions],
    }
