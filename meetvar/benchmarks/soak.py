"""``meetvar bench soak``: a demo looping the clip on N cameras for M minutes; is memory flat, lag bounded?

Every few seconds it samples, for each supervised service (the pid in ``DATA/supervisor.json``), the
resident memory of the service's whole process group (``/proc``: the service and any child it started;
psutil is not a dependency of the project); per camera the pose lag (now minus the moment ingest's
chunk holding the newest pose's frame appeared on ``video.chunks``: how far a consumer of ``poses``
trails the source, whatever the playback speed) and the dashboard's own ``meetvar_pose_lag_seconds``
from its ``/metrics``; and the decisions ``GET /api/attempts`` holds. At the end, per service:

* ``slope_mb_per_min``: least-squares slope of its RSS over the second half of the run (the first half
  holds start-up and warm-up: model loading, caches filling);
* ``peak_mb``, ``first_mb`` and ``last_mb``;
* ``restarts`` (a soak should have none);

and per camera the lag's median, p95, max and slope over the second half (bounded lag: a slope near 0).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from meetvar.benchmarks.demo_run import DemoProcess, StreamWatch

PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 1e6 if hasattr(os, "sysconf") else 4096 / 1e6


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cameras", type=int, default=3, help="cameras looping the clip (default 3)")
    p.add_argument("--minutes", type=float, default=30.0, help="how long to run (default 30)")
    p.add_argument("--speed", type=float, default=0.5, help="playback speed of the cameras (default 0.5)")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between samples (default 5)")
    p.add_argument("--video", help="clip to loop (default: the bundled clip)")
    p.add_argument("--data-dir", help="the demo's data directory (default: a new temp dir, kept)")
    p.add_argument("--json", action="store_true", help="print only the JSON")


def group_rss_mb(pgid: int) -> float | None:
    """Resident memory (MB) of every process in process group ``pgid``; None when there is none."""
    total = 0
    found = False
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            if int(fields[2]) != pgid:  # fields after the name: state, ppid, pgrp, …
                continue
            with open(f"/proc/{entry.name}/statm", "rb") as f:
                total += int(f.read().split()[1])
            found = True
        except (OSError, IndexError, ValueError):
            continue
    return total * PAGE_MB if found else None


def slope_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per minute; None under 3 points."""
    if len(points) < 3:
        return None
    xs = [t for t, _ in points]
    ys = [v for _, v in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var * 60.0


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


_LAG_LINE = re.compile(r'^meetvar_pose_lag_seconds\{camera="([^"]+)",service="dashboard"\} (\S+)$', re.M)


def dashboard_pose_lag(url: str) -> dict[str, float]:
    """``meetvar_pose_lag_seconds`` of the dashboard's poses consumer, per camera, from its /metrics."""
    import httpx

    text = httpx.get(f"{url}/metrics", timeout=5).text
    return {camera: float(value) for camera, value in _LAG_LINE.findall(text)}


def run_soak(args: argparse.Namespace) -> dict[str, Any]:
    from meetvar.cli import bundled_clip
    from meetvar.demo import demo_cameras

    video = Path(args.video) if args.video else bundled_clip()
    data = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="meetvar-soak-"))
    cameras = demo_cameras("demo/platform-1/side", args.cameras)
    extra = ["--cameras", str(args.cameras), "--speed", str(args.speed), "--video", str(video)]
    rss: dict[str, list[tuple[float, float]]] = {}
    lag_sent: dict[str, list[tuple[float, float]]] = {c: [] for c in cameras}
    decisions: list[tuple[float, int]] = []
    lag_metrics: dict[str, list[tuple[float, float]]] = {c: [] for c in cameras}
    duration = args.minutes * 60.0
    with DemoProcess(data, extra) as demo, StreamWatch(demo.bootstrap) as watch:
        t0 = time.monotonic()
        while (elapsed := time.monotonic() - t0) < duration:
            demo.check_alive()
            for name, info in demo.status().items():
                pid = info.get("pid")
                if isinstance(pid, int) and (mb := group_rss_mb(pid)) is not None:
                    rss.setdefault(name, []).append((elapsed, mb))
            for camera in cameras:
                if (lag := watch.pose_lag_s(camera)) is not None:
                    lag_sent[camera].append((elapsed, lag))
            with contextlib.suppress(Exception):  # a gap in the series; restarts show why
                decisions.append((elapsed, len(demo.attempts())))
            with contextlib.suppress(Exception):
                for camera, lag in dashboard_pose_lag(demo.url).items():
                    lag_metrics.setdefault(camera, []).append((elapsed, lag))
            time.sleep(max(0.0, args.interval - (time.monotonic() - t0 - elapsed)))
        restarts = demo.restarts()
        code = demo.stop()
    half = duration / 2
    services: dict[str, Any] = {}
    for name, points in sorted(rss.items()):
        second = [p for p in points if p[0] >= half]
        slope = slope_per_min(second)
        services[name] = {
            "slope_mb_per_min": None if slope is None else round(slope, 3),
            "first_mb": round(points[0][1], 1),
            "last_mb": round(points[-1][1], 1),
            "peak_mb": round(max(v for _, v in points), 1),
            "samples": len(points),
            "restarts": restarts.get(name, 0),
        }

    def lag_figures(series: list[tuple[float, float]]) -> dict[str, Any]:
        second = [v for t, v in series if t >= half]
        return {
            "median_s": None if not second else round(statistics.median(second), 2),
            "p95_s": None if (p := _pct(second, 0.95)) is None else round(p, 2),
            "max_s": None if not second else round(max(second), 2),
            "slope_s_per_min": None
            if (s := slope_per_min([x for x in series if x[0] >= half])) is None
            else round(s, 3),
        }

    return {
        "bench": "soak",
        "video": str(video),
        "cameras": len(cameras),
        "speed": args.speed,
        "minutes": args.minutes,
        "interval_s": args.interval,
        "memory_source": "/proc (statm of each service's process group)",
        "services": services,
        "pose_lag": {c: lag_figures(v) for c, v in lag_sent.items()},
        "pose_lag_dashboard_metric": {c: lag_figures(v) for c, v in lag_metrics.items()},
        "pose_lag_note": "pose_lag: now minus when ingest sent the chunk of the newest pose's frame (a"
        " consumer of poses is this far behind the source, at any speed); dashboard_metric: the"
        " dashboard's meetvar_pose_lag_seconds (now minus capture time; below real time, speed < 1,"
        " capture times run ahead of the clock, so it reads low)",
        "decisions": decisions[-1][1] if decisions else None,
        "decisions_per_min": None
        if len(decisions) < 2
        else round((decisions[-1][1] - decisions[0][1]) / ((decisions[-1][0] - decisions[0][0]) / 60), 2),
        "restarts": restarts,
        "demo_exit": code,
        "data_dir": str(data),
        "cpus": os.cpu_count(),
        "watch_reconnects": watch.errors,
    }
