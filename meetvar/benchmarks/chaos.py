"""``meetvar bench chaos``: kill -9 every service of a running demo mid-attempt and count what it cost.

A real ``meetvar demo`` (durable broker, a temporary ``--data-dir``) loops the bundled clip on
``--cameras`` cameras (one platform each, so every camera's calls are its own). Each service is killed
with SIGKILL in turn — every ingest, the pose worker, the referee, the archiver, the dashboard, the
broker — while the camera it is aimed at is in the middle of a rep (media time from the clip's rep
timing as ``meetvar judge`` finds it; what a consumer has reached is read from the ``poses`` topic,
what a source has sent from ``video.chunks``), each kill on another (camera, pass, rep). The supervisor
brings each one back. Then, once every camera is between reps, ``GET /api/attempts`` is compared per
camera and pass with ``meetvar judge`` on the clip:

* ``expected``: the clip's reps, in every pass the cameras completed (every rep that ended before
  the current position, in the pass under way);
* ``lost``: expected and not called; ``doubled``: called more than once (different ids);
  ``changed``: called with another verdict than ``judge``'s; ``extra``: calls that are none of the
  clip's reps. All must be 0.
* ``restarts`` per service (the kills, and whatever else fell over meanwhile).

:func:`compare` is the one place that does the comparison; tests/test_chaos.py uses it too.
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meetvar.benchmarks.demo_run import DemoProcess, Position, StreamWatch, judge_clip, wait_for

#: A call's bottom and the reference's are the same rep when this close (as ``meetvar evaluate``).
SAME_REP_S = 0.7
#: A rep of the pass under way is expected once the position is this far past its end (lockout, hold).
SETTLE_S = 2.5
#: The part of a rep a kill is aimed at: from 30 % to 70 % of the way from its start to its end.
AIM = (0.3, 0.7)

SERVICES_IN_TURN = ("ingest", "pose", "referee", "archiver", "dashboard", "broker")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cameras", type=int, default=3, help="cameras streaming the clip (default 3)")
    p.add_argument(
        "--speed",
        type=float,
        default=0.5,
        help="playback speed of the cameras (default 0.5: three cameras of pose on 2 CPUs is slower"
        " than real time)",
    )
    p.add_argument("--video", help="clip to loop (default: the bundled clip)")
    p.add_argument("--data-dir", help="the demo's data directory (default: a new temp dir, kept)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds for the whole run (default 900)")
    p.add_argument("--json", action="store_true", help="print only the JSON")


@dataclass(frozen=True)
class Rep:
    rep: int
    start_s: float
    bottom_s: float
    end_s: float
    verdict: str


def reference_reps(judged: dict[str, Any]) -> list[Rep]:
    return [
        Rep(int(a["rep"]), float(a["start_s"]), float(a["bottom_s"]), float(a["end_s"]), str(a["verdict"]))
        for a in judged["attempts"]
    ]


def _origin_us(item: dict[str, Any]) -> int:
    attempt = item["attempt"]
    return int(attempt["capture_us"]["bottom"]) - round(float(attempt["bottom_s"]) * 1e6)


def compare(
    reps: list[Rep],
    calls: list[dict[str, Any]],
    streams: dict[str, dict[int, float | None]],
) -> dict[str, Any]:
    """The calls against the reference, per camera and stream (pass).

    ``streams``: camera key → stream start (µs) → media time the stream has reached, or None when it
    was streamed to its end. ``calls``: the items of ``GET /api/attempts``.
    """
    by_camera: dict[str, dict[str, int]] = {}
    details: list[dict[str, Any]] = []
    claimed: set[str] = set()
    for camera, starts in sorted(streams.items()):
        figures = by_camera.setdefault(
            camera, dict.fromkeys(("expected", "got", "lost", "doubled", "changed"), 0)
        )
        mine = [c for c in calls if f"{c['meet']}/{c['platform']}/{c['camera']}" == camera]
        for start, reached in sorted(starts.items()):
            in_stream = [c for c in mine if abs(_origin_us(c) - start) <= 5_000]
            for rep in reps:
                hits = [
                    c for c in in_stream if abs(float(c["attempt"]["bottom_s"]) - rep.bottom_s) < SAME_REP_S
                ]
                claimed.update(c["attempt_id"] for c in hits)
                if reached is not None and rep.end_s + SETTLE_S > reached:
                    continue  # not over yet in the pass under way: neither expected nor counted
                figures["expected"] += 1
                figures["got"] += bool(hits)
                figures["lost"] += not hits
                figures["doubled"] += max(0, len({c["attempt_id"] for c in hits}) - 1)
                changed = [c for c in hits if c["attempt"]["verdict"] != rep.verdict]
                figures["changed"] += bool(changed)
                if not hits or len(hits) > 1 or changed:
                    details.append(
                        {
                            "camera": camera,
                            "stream_start_us": start,
                            "rep": rep.rep,
                            "expected_verdict": rep.verdict,
                            "calls": [
                                {
                                    "attempt_id": c["attempt_id"],
                                    "verdict": c["attempt"]["verdict"],
                                    "bottom_s": c["attempt"]["bottom_s"],
                                }
                                for c in hits
                            ],
                        }
                    )
    extra = [c for c in calls if c["attempt_id"] not in claimed]
    totals = {
        k: sum(f[k] for f in by_camera.values()) for k in ("expected", "got", "lost", "doubled", "changed")
    }
    totals["extra"] = len(extra)
    totals["distinct_ids"] = len({c["attempt_id"] for c in calls}) == len(calls)
    return {
        **totals,
        "per_camera": by_camera,
        "problems": details,
        "extra_calls": [
            {
                "attempt_id": c["attempt_id"],
                "verdict": c["attempt"]["verdict"],
                "bottom_s": c["attempt"]["bottom_s"],
            }
            for c in extra
        ],
    }


def in_rep(position: Position | None, reps: list[Rep], fresh_s: float = 2.0) -> Rep | None:
    """The rep whose aimed-at middle ``position`` is in, if the position is recent."""
    if position is None or position.ended or time.monotonic() - position.at > fresh_s:
        return None
    for rep in reps:
        lo = rep.start_s + AIM[0] * (rep.end_s - rep.start_s)
        hi = rep.start_s + AIM[1] * (rep.end_s - rep.start_s)
        if lo <= position.media_s <= hi:
            return rep
    return None


def kill_now(demo: DemoProcess, service: str, timeout: float = 60.0) -> tuple[int, int]:
    """SIGKILL ``service`` now; (its pid, its restarts before)."""
    pid = wait_for(f"{service} running", lambda: demo.pid(service), timeout, step=0.05)
    before = demo.restarts().get(service, 0)
    os.kill(pid, signal.SIGKILL)
    return pid, before


def wait_back(demo: DemoProcess, service: str, old: int, before: int, timeout: float = 120.0) -> float:
    """Seconds until the supervisor has ``service`` running again under a new pid."""
    t0 = time.monotonic()

    def back() -> bool:
        demo.check_alive()
        pid = demo.pid(service)
        return bool(pid and pid != old and demo.restarts().get(service, 0) > before)

    wait_for(f"{service} restarted by the supervisor", back, timeout, step=0.1)
    return round(time.monotonic() - t0, 2)


def wait_stable(demo: DemoProcess, service: str, hold_s: float = 4.0, timeout: float = 180.0) -> float:
    """Seconds until ``service`` has stayed up ``hold_s`` under one pid (a service that crashes again
    at once, as the dashboard did on its login token, never gets there); the dashboard must answer."""
    import httpx

    t0 = time.monotonic()
    since: tuple[int, float] | None = None

    def stable() -> bool:
        nonlocal since
        demo.check_alive()
        pid = demo.pid(service)
        if pid is None or since is None or since[0] != pid:
            since = None if pid is None else (pid, time.monotonic())
            return False
        if time.monotonic() - since[1] < hold_s:
            return False
        if service == "dashboard":
            try:
                return httpx.get(f"{demo.url}/api/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
        return True

    wait_for(f"{service} up and staying up", stable, timeout, step=0.2)
    return round(time.monotonic() - t0, 2)


def stream_positions(
    watch: StreamWatch, cameras: list[str], upto: dict[str, Position] | None = None
) -> dict[str, dict[int, float | None]]:
    """camera → stream start → media time reached by the poses (None: ended), for :func:`compare`.

    ``upto``: per camera, the position where the run is judged to end; later streams are left out."""
    out: dict[str, dict[int, float | None]] = {}
    for camera in cameras:
        current = (upto or {}).get(camera) or watch.pose(camera)
        out[camera] = {}
        for start in sorted(watch.streams.get(camera, set())):
            if current is not None and start > current.stream_start_us:
                if upto is not None:
                    continue  # after the end of the run
                out[camera][start] = 0.0  # chunks of a newer pass, no pose of it yet
            elif current is not None and current.stream_start_us == start and not current.ended:
                out[camera][start] = current.media_s
            else:
                out[camera][start] = None
    return out


def settle(
    demo: DemoProcess,
    watch: StreamWatch,
    cameras: list[str],
    reps: list[Rep],
    quiet: Callable[[Position | None], bool],
    timeout: float,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """End the run camera by camera, each where it is first ``quiet`` (between reps), then wait until
    every call expected up to there has arrived; (calls, comparison). Calls of a camera's later
    streams are left out (they are after the end of its run)."""
    deadline = time.monotonic() + timeout
    ends: dict[str, Position] = {}
    result: dict[str, Any] = {}
    calls: list[dict[str, Any]] = []
    while True:
        demo.check_alive()
        for camera in cameras:
            if camera not in ends and quiet(p := watch.pose(camera)) and p is not None:
                ends[camera] = Position(p.stream_start_us, p.media_s, p.ended)
        if len(ends) == len(cameras):
            try:
                everything = demo.attempts()
            except Exception:  # the dashboard may be restarting
                everything = None
            if everything is not None:
                calls = [c for c in everything if _in_run(c, ends)]
                result = compare(reps, calls, stream_positions(watch, cameras, ends))
                result["ends"] = {
                    c: {
                        "stream_start_us": p.stream_start_us,
                        "media_s": round(p.media_s, 2),
                        "ended": p.ended,
                    }
                    for c, p in ends.items()
                }
                if result["lost"] == 0:
                    return calls, result
        if time.monotonic() > deadline:
            if not result:
                raise TimeoutError(f"cameras never all between reps: ends {ends}")
            return calls, result
        time.sleep(0.5)


def _in_run(call: dict[str, Any], ends: dict[str, Position]) -> bool:
    end = ends.get(f"{call['meet']}/{call['platform']}/{call['camera']}")
    return end is not None and _origin_us(call) <= end.stream_start_us + 5_000


def run_chaos(args: argparse.Namespace) -> dict[str, Any]:
    from meetvar.cli import bundled_clip
    from meetvar.demo import demo_cameras, ingest_service_name

    video = Path(args.video) if args.video else bundled_clip()
    started = time.monotonic()
    deadline = started + args.timeout
    judged = judge_clip(video)
    reps = reference_reps(judged)
    if not reps:
        raise ValueError(f"meetvar judge finds no rep in {video}: nothing to aim at")
    data = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="meetvar-chaos-"))
    cameras = demo_cameras("demo/platform-1/side", args.cameras)
    extra = ["--cameras", str(args.cameras), "--speed", str(args.speed), "--video", str(video)]
    kills: list[dict[str, Any]] = []
    targets = [(ingest_service_name(k + 1, len(cameras)), k) for k in range(len(cameras))] + [
        (name, i % len(cameras)) for i, name in enumerate(SERVICES_IN_TURN[1:], start=len(cameras))
    ]
    hit: set[tuple[str, int, int]] = set()
    with DemoProcess(data, extra) as demo, StreamWatch(demo.bootstrap) as watch:
        for service, k in targets:
            camera = cameras[k]
            # A source is aimed by what it has sent; a consumer (and the broker) by the poses made.
            where = watch.chunk if service.startswith("ingest") else watch.pose

            def aimed(camera: str = camera, where: Callable[[str], Position | None] = where) -> Any:
                demo.check_alive()
                position = where(camera)
                rep = in_rep(position, reps)
                if rep is None or position is None:
                    return None
                if (camera, position.stream_start_us, rep.rep) in hit:
                    return None
                return position, rep

            position, rep = wait_for(
                f"{camera} mid-rep for the {service} kill",
                aimed,
                max(10.0, deadline - time.monotonic()),
                0.05,
            )
            hit.add((camera, position.stream_start_us, rep.rep))
            old, before = kill_now(demo, service)
            back_s = wait_back(demo, service, old, before, timeout=max(10.0, deadline - time.monotonic()))
            stable_s = wait_stable(demo, service, timeout=max(10.0, deadline - time.monotonic()))
            kills.append(
                {
                    "service": service,
                    "camera": camera,
                    "stream_start_us": position.stream_start_us,
                    "rep": rep.rep,
                    "media_s": round(position.media_s, 2),
                    "rep_window_s": [rep.start_s, rep.end_s],
                    "back_after_s": back_s,
                    "stable_after_s": round(back_s + stable_s, 2),
                }
            )
        # Every camera between reps: in a new pass before its first rep.
        first = min(r.start_s for r in reps)

        def quiet(p: Position | None) -> bool:
            return p is not None and not p.ended and 0.5 <= p.media_s <= first - 0.5

        _, result = settle(demo, watch, cameras, reps, quiet, max(30.0, deadline - time.monotonic()))
        restarts = demo.restarts()
        code = demo.stop()
    ok = all(result[k] == 0 for k in ("lost", "doubled", "changed", "extra")) and result["distinct_ids"]
    return {
        "bench": "chaos",
        "video": str(video),
        "cameras": len(cameras),
        "speed": args.speed,
        "speed_note": "cameras paced at this fraction of real time: pose on every camera must keep up"
        if args.speed < 1
        else "real time",
        "broker": "durable (Tansu on SeaweedFS S3)",
        "reference": [r.__dict__ for r in reps],
        "kills": kills,
        **result,
        "restarts": restarts,
        "demo_exit": code,
        "data_dir": str(data),
        "seconds": round(time.monotonic() - started, 1),
        "cpus": os.cpu_count(),
        "ok": ok,
    }
