"""``meetvar judge VIDEO``: the streaming pipeline's own stages, run in one process without a broker.

Frames go through the same normalise→chunk→decode path as live video, then the same pose tracker and
the same referee, so a recorded video and its live stream are judged identically.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt

from gpu_service.blazepose import BlazePoseTracker
from ingest.normalize import frames_from_file
from meetvar.errors import NoPersonError
from referee.config import RefereeConfig
from referee.keypoints import PoseFrame
from referee.referee import Referee

Frame = tuple[int, int, npt.NDArray[np.uint8]]
_DONE = object()


def _prefetch(frames: Iterator[Frame], depth: int = 8) -> Iterator[Frame]:
    """Decode on a second thread so decoding and pose inference use both cores."""
    q: queue.Queue[object] = queue.Queue(maxsize=depth)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for item in frames:
                q.put(item)
        except BaseException as exc:  # re-raised in the consumer thread
            errors.append(exc)
        finally:
            q.put(_DONE)

    threading.Thread(target=work, daemon=True, name="decode").start()
    while (item := q.get()) is not _DONE:
        yield item  # type: ignore[misc]
    if errors:
        raise errors[0]


def poses_from_file(path: Path, *, threads: int = 1) -> Iterator[PoseFrame]:
    tracker = BlazePoseTracker(threads=threads)
    for index, capture_us, rgb in _prefetch(frames_from_file(path)):
        yield tracker.process(rgb, capture_us, index)


def judge_video(path: Path, *, threads: int = 1, config: RefereeConfig | None = None) -> dict[str, object]:
    started = time.perf_counter()
    referee = Referee(origin_us=0, config=config)
    decisions = []
    n = seen = 0
    first_us = last_us = 0
    for pose in poses_from_file(path, threads=threads):
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
