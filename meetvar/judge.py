"""``meetvar judge VIDEO``: the streaming pipeline's own stages, run in one process without a broker.

Frames go through the same normalise→chunk→decode path as live video (``ingest.normalize``'s chunks,
``ingest.chunk_decoder``'s decoder), then the same pose tracker and the same referee, so a recorded
video and its live stream are judged identically.

Speed: the stages run as a pipeline on three threads joined by small bounded queues — source decode +
x264 chunk encode, chunk decode, and pose + referee — because on a 2-core machine no single stage
keeps both cores busy, and PyAV, x264 and ONNX Runtime all release the GIL while they work. The pose
tracker takes the decoder's YUV planes (``decode_chunk_yuv``) exactly as the pose worker does, and
samples its two crops from them instead of converting every frame to RGB.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from gpu_service.blazepose import BlazePoseTracker
from gpu_service.worker import decode_for_pose
from ingest.chunk_decoder import Yuv420
from ingest.chunker import Chunk
from ingest.normalize import chunks_from_file
from meetvar.errors import NoPersonError
from referee.config import RefereeConfig
from referee.keypoints import PoseFrame
from referee.referee import Referee

T = TypeVar("T")
U = TypeVar("U")
Frame = tuple[int, int, Yuv420]  # (frame index, capture µs, planes)
_DONE = object()


def _stage(items: Iterable[T], *, depth: int, name: str) -> Iterator[T]:
    """Iterate ``items`` on a thread of its own, ``depth`` items ahead of the consumer; errors are
    re-raised in the consumer, and a consumer that stops early stops the thread too."""
    q: queue.Queue[object] = queue.Queue(maxsize=depth)
    errors: list[BaseException] = []
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as exc:  # re-raised in the consumer thread
            errors.append(exc)
        finally:
            put(_DONE)

    thread = threading.Thread(target=work, daemon=True, name=name)
    thread.start()
    try:
        while (item := q.get()) is not _DONE:
            yield item  # type: ignore[misc]
    finally:
        stop.set()
    if errors:
        raise errors[0]


def _flat_map(items: Iterable[T], fn: Callable[[T], list[U]]) -> Iterator[U]:
    for item in items:
        yield from fn(item)


def frames_for_pose(path: Path, *, start_us: int = 0) -> Iterator[Frame]:
    """``(frame_index, capture_us, planes)`` of every frame, decoded from the chunks a live stream of
    this file would carry, with encode and decode each on their own thread."""
    chunks: Iterator[Chunk] = _stage(chunks_from_file(path, start_us=start_us), depth=4, name="encode")
    index = 0

    def decode(chunk: Chunk) -> list[Frame]:
        nonlocal index
        planes = decode_for_pose(chunk.data, chunk.frame_count)
        out = [(index + i, c, p) for i, (c, p) in enumerate(zip(chunk.capture_us, planes, strict=True))]
        index += len(out)
        return out

    return _stage(_flat_map(chunks, decode), depth=32, name="decode")


def poses_from_file(path: Path, *, threads: int = 1, backend: str | None = None) -> Iterator[PoseFrame]:
    tracker = BlazePoseTracker(threads=threads, backend=backend)
    for index, capture_us, planes in frames_for_pose(path):
        yield tracker.process(planes, capture_us, index)


def judge_video(
    path: Path, *, threads: int = 1, config: RefereeConfig | None = None, backend: str | None = None
) -> dict[str, object]:
    started = time.perf_counter()
    referee = Referee(origin_us=0, config=config)
    decisions = []
    n = seen = 0
    first_us = last_us = 0
    for pose in poses_from_file(path, threads=threads, backend=backend):
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
