"""``meetvar bench pose|pipeline|workers|ingest|fuzz|chaos|soak|broker``: benchmarks printing JSON, last.

``pose`` and ``pipeline`` live in :mod:`meetvar.benchmarks.pipeline`; ``ingest`` is
:mod:`meetvar.benchmarks.ingest`'s ``run_bench_ingest`` when that module is installed (it is looked up
when the command runs, so this command works, and says so clearly, without it). Everything heavy is
imported inside the commands so ``meetvar --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
from typing import Any

from meetvar import benchmarks
from meetvar.errors import UserError

INGEST_MODULE = "meetvar.benchmarks.ingest"


def register(sub: Any) -> None:
    bench = sub.add_parser("bench", help="benchmarks (pose, pipeline, ingest); JSON printed last")
    kinds = bench.add_subparsers(dest="bench", required=True)

    pose = kinds.add_parser(
        "pose", help="pose fps and latency per backend and batch, agreement with MediaPipe"
    )
    add_pose_arguments(pose)
    pose.set_defaults(func=cmd_bench_pose)

    pipe = kinds.add_parser("pipeline", help="judge end to end, and lockout-to-dashboard latency live")
    add_pipeline_arguments(pipe)
    pipe.set_defaults(func=cmd_bench_pipeline)

    workers = kinds.add_parser("workers", help="pose frames/s with 1, 2, ... pose workers on a real broker")
    add_workers_arguments(workers)
    workers.set_defaults(func=cmd_bench_workers)

    # The ingest benchmark's options belong to its own module, which is imported only when the command
    # runs: everything after "ingest" is handed to that module's parser untouched ("+" as the prefix
    # character means this parser treats "--cameras 1 2" and "--help" as plain words).
    ingest = kinds.add_parser(
        "ingest",
        help="WHIP cameras per core and capture-to-Kafka latency (meetvar bench ingest --help)",
        add_help=False,
        prefix_chars="+",
    )
    ingest.add_argument("rest", nargs="*", help="options of the ingest benchmark")
    ingest.set_defaults(func=cmd_bench_ingest)

    fuzz = kinds.add_parser(
        "fuzz", help="bad input by the thousand: parsers, chunk decoder, WHIP SDP, the dashboard's API"
    )
    fuzz.add_argument("--examples", type=int, default=10_000, help="inputs per target (default 10000)")
    fuzz.add_argument("--api-examples", type=int, help="schemathesis cases (default: --examples)")
    fuzz.add_argument("--targets", help="comma-separated name prefixes, e.g. schemas,chunk_decoder")
    fuzz.add_argument("--json", action="store_true", help="print only the JSON")
    fuzz.set_defaults(func=cmd_bench_fuzz)

    from meetvar.benchmarks import chaos, soak  # light: their heavy imports happen when they run

    chaos_p = kinds.add_parser(
        "chaos", help="kill -9 every service of a 3-camera demo mid-attempt: attempts lost, doubled, changed"
    )
    chaos.add_arguments(chaos_p)
    chaos_p.set_defaults(func=cmd_bench_chaos)
    soak_p = kinds.add_parser(
        "soak", help="a demo looping the clip on N cameras for M minutes: memory slope, lag, decisions"
    )
    soak.add_arguments(soak_p)
    soak_p.set_defaults(func=cmd_bench_soak)

    broker = kinds.add_parser(
        "broker", help="the embedded broker's CPU cost as its log grows (durable S3 default or --memory)"
    )
    broker.add_argument("--memory", action="store_true", help="the in-memory broker instead of S3")
    broker.add_argument("--cameras", type=int, default=1, help="pose streams produced (default 1)")
    broker.add_argument("--consumers", type=int, default=3, help="consumer groups reading (default 3)")
    broker.add_argument("--segments", type=int, default=6, help="segments measured (default 6)")
    broker.add_argument("--segment-s", type=float, default=10.0, help="seconds per segment (default 10)")
    broker.add_argument("--json", action="store_true", help="print only the JSON")
    broker.set_defaults(func=cmd_bench_broker)


def add_pose_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--video", help="clip to measure on (default: the bundled clip scaled to 720p)")
    p.add_argument("--backends", default="ort", help="comma-separated: ort, torch, tensorrt")
    p.add_argument("--batch", default="1", help="comma-separated batch sizes (cameras per model call)")
    p.add_argument("--frames", type=int, default=300, help="frames of the clip to use (default 300)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per backend (default 1)")
    p.add_argument(
        "--repeat", type=int, default=1, help="runs per backend and of MediaPipe; the best is kept"
    )
    p.add_argument("--no-mediapipe", action="store_true", help="skip the MediaPipe reference run")
    p.add_argument(
        "--mediapipe-python", default=str(benchmarks.MEDIAPIPE_PYTHON), help="python of the side venv"
    )
    p.add_argument("--json", action="store_true", help="print only the JSON")


def add_pipeline_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--video", help="clip for the judge run (default: the bundled clip scaled to 720p)")
    p.add_argument("--repeat", type=int, default=1, help="judge runs (the best is reported)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-live", action="store_true", help="skip the live (demo) latency part")
    p.add_argument("--live-video", help="clip the live part streams (default: the bundled clip)")
    p.add_argument(
        "--decisions", type=int, default=2, help="decisions per camera in a pass of the live clip (its reps)"
    )
    p.add_argument("--cameras", default="1", help="comma-separated camera counts for the live part, e.g. 1,3")
    p.add_argument("--rounds", type=int, default=1, help="demo runs per camera count (p50/p95 over all)")
    p.add_argument(
        "--warm-passes",
        type=int,
        default=1,
        help="passes of the clip not counted, while the pose worker starts (default 1; 0: cold start)",
    )
    p.add_argument(
        "--memory-broker", action="store_true", help="live part on the in-memory broker (demo --memory)"
    )
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for them")
    p.add_argument("--json", action="store_true", help="print only the JSON")


def add_workers_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2)")
    p.add_argument("--cameras", type=int, default=4, help="cameras publishing (default 4)")
    p.add_argument("--chunks", type=int, default=8, help="measured chunks per camera (default 8, 4 s)")
    p.add_argument("--video", help="clip the cameras send (default: the bundled clip)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for each run's poses")
    p.add_argument("--json", action="store_true", help="print only the JSON")


def _emit(result: dict[str, Any], as_json: bool) -> int:
    if not as_json:
        print(json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0


def cmd_bench_pose(args: argparse.Namespace) -> int:
    from meetvar.benchmarks.pipeline import bench_pose

    return _emit(bench_pose(args), args.json)


def cmd_bench_pipeline(args: argparse.Namespace) -> int:
    from meetvar.benchmarks.pipeline import bench_pipeline

    return _emit(bench_pipeline(args), args.json)


def cmd_bench_workers(args: argparse.Namespace) -> int:
    from meetvar.benchmarks.workers import run_bench_workers

    return _emit(run_bench_workers(args), args.json)


def cmd_bench_ingest(args: argparse.Namespace) -> int:
    if importlib.util.find_spec(INGEST_MODULE) is None:
        raise UserError(f"the ingest benchmark ({INGEST_MODULE}) is not part of this install")
    module = importlib.import_module(INGEST_MODULE)
    parser = argparse.ArgumentParser(prog="meetvar bench ingest")
    if hasattr(module, "add_arguments"):
        module.add_arguments(parser)
    else:
        parser.add_argument("--json", action="store_true")
    own = parser.parse_args(args.rest)
    result: dict[str, Any] = module.run_bench_ingest(own)
    return _emit(result, bool(getattr(own, "json", False)))


def cmd_bench_fuzz(args: argparse.Namespace) -> int:
    """Per target: inputs, accepted, rejected with a clear error, crashes (must be 0; exit 1 if not)."""
    import logging

    import structlog

    from meetvar.benchmarks.fuzz import run_all

    targets = {t.strip() for t in args.targets.split(",") if t.strip()} if args.targets else None
    # Thousands of rejected inputs would log thousands of lines: warnings only, while it runs.
    saved, httpx_log = structlog.get_config(), logging.getLogger("httpx")
    httpx_level = httpx_log.level
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    httpx_log.setLevel(logging.WARNING)
    try:
        result = run_all(args.examples, targets, args.api_examples)
    finally:
        structlog.configure(**saved)
        httpx_log.setLevel(httpx_level)
    _emit(result, args.json)
    return 1 if result["crashes"] else 0


def cmd_bench_chaos(args: argparse.Namespace) -> int:
    """Exit 1 when any attempt was lost, doubled, changed or made up."""
    from meetvar.benchmarks.chaos import run_chaos

    result = run_chaos(args)
    _emit(result, args.json)
    return 0 if result["ok"] else 1


def cmd_bench_broker(args: argparse.Namespace) -> int:
    from meetvar.benchmarks.broker_cost import bench_broker

    if args.cameras < 1 or args.consumers < 0 or args.segments < 2 or args.segment_s <= 0:
        raise UserError("--cameras ≥ 1, --consumers ≥ 0, --segments ≥ 2 and --segment-s > 0")
    result = bench_broker(not args.memory, args.cameras, args.consumers, args.segments, args.segment_s)
    _emit(result, args.json)
    return 0


def cmd_bench_soak(args: argparse.Namespace) -> int:
    from meetvar.benchmarks.soak import run_soak

    return _emit(run_soak(args), args.json)
