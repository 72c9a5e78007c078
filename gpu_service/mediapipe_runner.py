"""Run Google's MediaPipe Pose on frames from a .npy file and time it: the reference for ``meetvar bench
pose``.

This file is executed by the *side* virtual environment's Python (``.venv-mediapipe``, made by ``make
bench-deps``), because ``mediapipe==0.10.21`` needs numpy<2 and so cannot share meetvar's environment.
It therefore imports nothing from meetvar and only numpy and mediapipe from its own environment.

    .venv-mediapipe/bin/python gpu_service/mediapipe_runner.py FRAMES.npy OUT.npz [--warmup N]

``FRAMES.npy`` is ``(N, H, W, 3)`` uint8 RGB (memory-mapped, each frame copied out before its timer
starts); ``OUT.npz`` gets ``landmarks`` ``(N, 33, 2)`` pixels (NaN where MediaPipe found nobody),
``visibility`` ``(N, 33)``, ``seconds`` ``(N,)`` per ``process`` call, and ``cpu_s``/``wall_s`` of the
timed loop. MediaPipe runs as the tracker is configured to reproduce it: ``model_complexity=1``,
``smooth_landmarks=False``, no segmentation, tracking across frames (``static_image_mode=False``).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    import mediapipe as mp
    import numpy as np

    p = argparse.ArgumentParser()
    p.add_argument("frames")
    p.add_argument("out")
    p.add_argument("--warmup", type=int, default=5, help="frames run (on a separate graph) before timing")
    args = p.parse_args(argv)
    frames = np.load(args.frames, mmap_mode="r")
    n, height, width = frames.shape[:3]

    def make() -> object:
        return mp.solutions.pose.Pose(
            static_image_mode=False,
            model_complexity=1,
            smooth_landmarks=False,
            enable_segmentation=False,
            min_detection_confidence=0.5,
            min_tracking_confidence=0.5,
        )

    warm = make()
    for i in range(min(args.warmup, n)):
        warm.process(np.ascontiguousarray(frames[i]))  # type: ignore[attr-defined]
    warm.close()  # type: ignore[attr-defined]

    pose = make()
    landmarks = np.full((n, 33, 2), np.nan)
    visibility = np.zeros((n, 33))
    seconds = np.zeros(n)
    cpu0, wall0 = _cpu(), time.perf_counter()
    for i in range(n):
        image = np.ascontiguousarray(frames[i])
        t0 = time.perf_counter()
        result = pose.process(image)  # type: ignore[attr-defined]
        seconds[i] = time.perf_counter() - t0
        if result.pose_landmarks is not None:
            for k, lm in enumerate(result.pose_landmarks.landmark):
                landmarks[i, k] = (lm.x * width, lm.y * height)
                visibility[i, k] = lm.visibility
    wall_s, cpu_s = time.perf_counter() - wall0, _cpu() - cpu0
    pose.close()  # type: ignore[attr-defined]
    np.savez(
        args.out, landmarks=landmarks, visibility=visibility, seconds=seconds, cpu_s=cpu_s, wall_s=wall_s
    )
    print(json.dumps({"frames": int(n), "wall_s": wall_s, "cpu_s": cpu_s, "mediapipe": mp.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
