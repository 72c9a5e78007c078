"""The one command-line entry point. Subcommands import their heavy modules lazily, so ``--help`` and
error messages are instant, and expected failures print one line without a traceback."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from meetvar.errors import UserError
from meetvar.settings import env_option, split_list

DEFAULT_CAMERA = "demo/platform-1/side"

# Modules that add their own subcommands: each defines ``register(subparsers) -> None`` and keeps its
# heavy imports inside the command function, so ``meetvar --help`` stays instant.
COMMAND_MODULES: tuple[str, ...] = (
    "meetvar.commands.archive",
    "meetvar.commands.replay",
    "meetvar.commands.kinesis",
    "dashboard.cli",
    "meetvar.commands.camera",
    "meetvar.commands.bench",
    "gpu_service.rtmpose_export",
    "meetvar.commands.meetsoftware",
    "meetvar.reports.cli",
    "meetvar.commands.metrics",  # last: adds --metrics-port to the services registered before it
)


def bundled_clip() -> Path:
    return Path(str(resources.files("ingest").joinpath("samples/rohanx01_squat.mp4")))


def _existing_video(text: str) -> Path:
    path = Path(text)
    if not path.exists():
        raise UserError(f"no such file: {path} — give the path of a video file")
    if path.is_dir():
        raise UserError(f"{path} is a folder — give the path of a video file")
    return path


def _camera_id(text: str) -> str:
    parts = text.split("/")
    if len(parts) != 3 or not all(parts):
        raise UserError(f"camera id {text!r} must look like meet/platform/camera, e.g. {DEFAULT_CAMERA}")
    return text


_EVERY_FRAME_HELP = (
    "run the pose model on every frame, also while the lifter stands still (slower; see gpu_service/still.py)"
)


def cmd_judge(args: argparse.Namespace) -> int:
    from meetvar.judge import judge_video

    result = judge_video(_existing_video(args.video), threads=args.threads, skip_still=not args.every_frame)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['video']}: {result['frames']} frames at {result['fps']} fps,"
            f" judged in {result['processing_s']} s"
        )
        attempts: list[dict[str, Any]] = result["attempts"]  # type: ignore[assignment]
        if not attempts:
            print("  no attempt found")
        for a in attempts:
            d = a["depth"]
            margin = "—" if d["margin_cm"] is None else f"{d['margin_cm']:+.1f} cm"
            print(
                f"  rep {a['rep']}: bottom {a['bottom_s']:.2f} s  {a['verdict']:<9} depth {d['status']:<9}"
                f" margin {margin}  confidence {d['confidence']:.2f}"
            )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from meetvar.evaluate import cross_validate, evaluate, format_table, judged_reps
    from meetvar.evaluation.reliability import table as reliability_table
    from meetvar.evaluation.repeatability import format_repeatability
    from meetvar.evaluation.repeatability import summarise as summarise_repeatability
    from meetvar.judge import judge_video
    from referee.config import RefereeConfig

    if args.mocap:
        from meetvar.mocap import evaluate_mocap, format_mocap_table

        root = Path(args.mocap)
        if not root.is_dir():
            raise UserError(f"no such folder: {root} — pass the folder holding the .trc / FK .csv recordings")
        mocap = evaluate_mocap(root)
        print(json.dumps(mocap) if args.json else format_mocap_table(mocap))
        return 0
    if not args.videos or not args.labels:
        raise UserError("pass --videos DIR and --labels CSV (or --mocap DIR for the 3D projection test)")
    videos, labels = Path(args.videos), Path(args.labels)
    if not videos.is_dir():
        raise UserError(f"no such folder: {videos} — pass the folder the labels' file names are relative to")
    if not labels.is_file():
        raise UserError(f"no such labels file: {labels}")
    # --fit measures raw centre margins (offset 0) and fits the surface offset on them.
    config = RefereeConfig(surface_offset_thigh=0.0) if args.fit else RefereeConfig()
    report = evaluate(
        videos,
        labels,
        lambda p, skip: judge_video(
            p, threads=args.threads, config=config, skip_still=not args.every_frame, skip_frames=skip
        ),
        progress=lambda m: print(m, file=sys.stderr, flush=True),
        repeat=args.repeat,
    )
    result: dict[str, Any] = {"scored": report.summary(("H", "M")), "low_confidence": report.summary(("L",))}
    result["reliability"] = reliability_table(judged_reps(report.rows))
    if args.repeat > 1:
        reps = report.repeatability()
        result["repeatability"] = {
            "starts": args.repeat,
            "scored": summarise_repeatability(reps, ("H", "M")),
            "all": summarise_repeatability(reps, ("H", "M", "L")),
            "reps": [dataclasses.asdict(r) | {"spread_cm": r.spread_cm, "flipped": r.flipped} for r in reps],
        }
    if args.fit:
        samples = [
            (r.label.file, r.margin_thigh, r.label.label)
            for r in report.rows
            if r.label.confidence in ("H", "M")
            and r.label.label in ("depth", "not_depth")
            and r.margin_thigh is not None
        ]
        result["fit"] = cross_validate(samples)
    if args.json:
        print(json.dumps({**result, "rows": [dataclasses.asdict(r) for r in report.rows]}))
    else:
        print(format_table(report))
        if args.repeat > 1:
            print(format_repeatability(report.repeatability()))
        print(json.dumps({k: v for k, v in result.items() if k != "repeatability"}, indent=2))
        if args.repeat > 1:
            print(json.dumps({k: v for k, v in result["repeatability"].items() if k != "reps"}, indent=2))
    return 0


def _liftingcast_link(args: argparse.Namespace) -> Any:
    """The demo's ``--liftingcast*`` flags as one link, or None; a half-given link is a user error."""
    from meetvar.demo import LiftingCastLink

    if not args.liftingcast:
        return None
    if not args.liftingcast.startswith(("ws://", "wss://")):
        raise UserError(
            f"--liftingcast {args.liftingcast!r}: a LiftingCast feed URL starts with ws:// or wss://"
        )
    missing = [
        flag
        for flag, value in (
            ("--liftingcast-meet-id", args.liftingcast_meet_id),
            ("--liftingcast-password", args.liftingcast_password),
            ("--liftingcast-platform", args.liftingcast_platform),
        )
        if not value
    ]
    if missing:
        raise UserError(f"--liftingcast needs {', '.join(missing)} too")
    return LiftingCastLink(
        args.liftingcast,
        args.liftingcast_meet_id,
        args.liftingcast_password,
        args.liftingcast_platform,
        api_key=args.liftingcast_api_key,
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from meetvar.demo import Demo

    video = _existing_video(args.video) if args.video else bundled_clip()
    return Demo(
        video=video,
        host=args.host,
        port=args.port,
        data_dir=Path(args.data_dir) if args.data_dir else None,
        loop=not args.once,
        speed=args.speed,
        camera=_camera_id(args.camera),
        memory=args.memory,
        cameras=args.cameras,
        liftingcast=_liftingcast_link(args),
    ).run()


def cmd_ingest(args: argparse.Namespace) -> int:
    from meetvar.services import run_ingest

    return asyncio.run(
        run_ingest(
            args.broker,
            _existing_video(args.video),
            _camera_id(args.camera),
            args.store,
            args.loop,
            args.speed,
            resume=args.resume,
            inline_limit=args.inline_limit,
        )
    )


def cmd_pose_worker(args: argparse.Namespace) -> int:
    from meetvar.services import run_pose_worker

    return asyncio.run(
        run_pose_worker(
            args.broker,
            args.store,
            args.threads,
            backend=args.backend,
            precision=args.precision,
            skip_still=not args.every_frame,
        )
    )


def cmd_referee(args: argparse.Namespace) -> int:
    from stream_processors.referee_app import run_referee

    return run_referee(args.broker, Path(args.data_dir))


def cmd_dashboard(args: argparse.Namespace) -> int:
    from meetvar.services import run_dashboard

    return run_dashboard(
        args.broker,
        args.host,
        args.port,
        args.db,
        archive=args.store,
        anonymous_viewer=args.anonymous_viewer,
        public_url=args.public_url,
        allowed_origins=split_list(args.allowed_origins),
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="meetvar", description="Video assistant referee for powerlifting meets.")
    sub = p.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo", help="broker, services and dashboard on loopback, with a bundled squat clip"
    )
    demo.add_argument("--video", help="video to stream instead of the bundled clip")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000, help="dashboard port (default 8000)")
    demo.add_argument(
        "--data-dir", help="where logs, the object store and the database go (default: a temp dir)"
    )
    demo.add_argument("--once", action="store_true", help="stream the clip once instead of looping")
    demo.add_argument("--speed", type=float, default=1.0, help="playback speed; 0 = as fast as possible")
    demo.add_argument("--camera", default=DEFAULT_CAMERA, help="camera id meet/platform/camera")
    demo.add_argument(
        "--cameras",
        type=int,
        default=1,
        help="stream the clip on N cameras, one per platform (platform-1, platform-2, …; default 1)",
    )
    demo.add_argument(
        "--memory",
        action="store_true",
        help="keep the broker in memory (default: durable, on a SeaweedFS S3 store in the data dir)",
    )
    demo.add_argument(
        "--liftingcast",
        metavar="URL",
        help="follow this LiftingCast live feed (ws:// or wss://): its lifters, weights and lights name"
        " the demo's attempts",
    )
    demo.add_argument("--liftingcast-meet-id", help="the LiftingCast meet id (with --liftingcast)")
    env_option(
        demo,
        "--liftingcast-password",
        env="MEETVAR_LIFTINGCAST_PASSWORD",
        help="the LiftingCast meet's password (with --liftingcast)",
    )
    demo.add_argument(
        "--liftingcast-platform",
        metavar="LC_PLATFORM_ID",
        help="the LiftingCast platform whose attempts are the demo camera's (with --liftingcast)",
    )
    demo.add_argument("--liftingcast-api-key", help="LiftingCast API key, if the feed needs one")
    demo.set_defaults(func=cmd_demo)

    judge = sub.add_parser("judge", help="judge a recorded video offline with the same referee core")
    judge.add_argument("video")
    judge.add_argument("--json", action="store_true", help="print the JSON contract")
    judge.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads for the pose model")
    judge.add_argument("--every-frame", action="store_true", help=_EVERY_FRAME_HELP)
    judge.set_defaults(func=cmd_judge)

    ev = sub.add_parser("evaluate", help="agreement of judge with a labels CSV of real footage")
    ev.add_argument("--videos", help="folder the labels' file names are relative to")
    ev.add_argument("--labels", help="CSV: file, rep, bottom_time_s, label, confidence, view")
    ev.add_argument("--mocap", help="folder of 3D recordings: project into cameras, compare with 3D truth")
    ev.add_argument("--json", action="store_true")
    ev.add_argument("--fit", action="store_true", help="fit the surface offset, cross-validated by video")
    ev.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="K",
        help="judge each clip K times, started 0…K-1 frames later: margin spread and flips per rep",
    )
    ev.add_argument("--threads", type=int, default=1)
    ev.add_argument("--every-frame", action="store_true", help=_EVERY_FRAME_HELP)
    ev.set_defaults(func=cmd_evaluate)

    ing = sub.add_parser("ingest", help="stream a video file into video.chunks as one camera")
    ing.add_argument("video")
    env_option(ing, "--broker", env="MEETVAR_BROKER", required=True, help="Kafka bootstrap HOST:PORT")
    env_option(ing, "--camera", env="MEETVAR_CAMERA", default=DEFAULT_CAMERA, help="meet/platform/camera")
    env_option(
        ing,
        "--store",
        env="MEETVAR_STORE",
        required=True,
        help="object store for chunks above the inline limit: folder or s3://bucket[/prefix]?endpoint=URL",
    )
    ing.add_argument("--loop", action="store_true")
    ing.add_argument("--speed", type=float, default=1.0)
    ing.add_argument(
        "--inline-limit",
        type=int,
        metavar="BYTES",
        help="chunks larger than this go to --store as claim checks (default 900000: under Kafka's 1 MB)",
    )
    ing.add_argument(
        "--resume",
        action="store_true",
        help="first finish the pass a killed run of this camera left unfinished on the broker",
    )
    ing.set_defaults(func=cmd_ingest)

    pw = sub.add_parser("pose-worker", help="consume video.chunks, produce poses")
    env_option(pw, "--broker", env="MEETVAR_BROKER", required=True, help="Kafka bootstrap HOST:PORT")
    env_option(
        pw,
        "--store",
        env="MEETVAR_STORE",
        required=True,
        help="where ingest's claim checks are: folder or s3://",
    )
    env_option(
        pw,
        "--threads",
        env="MEETVAR_POSE_THREADS",
        type=int,
        default=1,
        help="CPU threads of the pose model (ONNX Runtime)",
    )
    env_option(
        pw,
        "--backend",
        env="MEETVAR_POSE_BACKEND",
        default="onnxruntime",
        choices=["onnxruntime", "ort", "torch", "tensorrt", "trt"],
        help="onnxruntime (CPU, default), torch (CUDA when there is one) or tensorrt (needs the gpu extra)",
    )
    env_option(
        pw,
        "--precision",
        env="MEETVAR_POSE_PRECISION",
        default="fp32",
        choices=["fp32", "fp16"],
        help="fp16: GPU backends only",
    )
    pw.add_argument("--every-frame", action="store_true", help=_EVERY_FRAME_HELP)
    pw.set_defaults(func=cmd_pose_worker)

    ref = sub.add_parser("referee", help="the faust app that judges poses into decisions and explanations")
    env_option(ref, "--broker", env="MEETVAR_BROKER", required=True, help="Kafka bootstrap HOST:PORT")
    env_option(ref, "--data-dir", env="MEETVAR_DATA_DIR", required=True, help="folder of the referee's state")
    ref.set_defaults(func=cmd_referee)

    dash = sub.add_parser("dashboard", help="the judges' dashboard (HTTP + WebSocket)")
    env_option(dash, "--broker", env="MEETVAR_BROKER", required=True, help="Kafka bootstrap HOST:PORT")
    env_option(dash, "--host", env="MEETVAR_HOST", default="127.0.0.1", help="listen address")
    env_option(dash, "--port", env="MEETVAR_PORT", type=int, default=8000, help="listen port")
    env_option(
        dash,
        "--db",
        env="MEETVAR_DB",
        required=True,
        help="SQLite file, or a SQLAlchemy URL (postgresql+psycopg://…)",
    )
    env_option(
        dash,
        "--store",
        env="MEETVAR_STORE",
        help="the archive (folder or s3:// URL) of the chunks, for replays and WHIP claim checks",
    )
    dash.add_argument(
        "--anonymous-viewer", action="store_true", help="read-only access without login (loopback only)"
    )
    env_option(
        dash,
        "--public-url",
        env="MEETVAR_PUBLIC_URL",
        help="the https URL users reach the dashboard at, for origin checks",
    )
    env_option(
        dash,
        "--allowed-origins",
        env="MEETVAR_ALLOWED_ORIGINS",
        help="comma-separated extra origins browsers may use (https://host[:port])",
    )
    dash.set_defaults(func=cmd_dashboard)

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Logs go to stderr from the first line on: stdout belongs to results (`judge --json` is parsed).
    from meetvar.logs import configure

    configure(args.command)
    try:
        code: int = args.func(args)
        return code
    except UserError as exc:
        print(f"meetvar: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if not _expected(exc):
            raise
        print(f"meetvar: {exc}", file=sys.stderr)
        return 2


def _expected(exc: Exception) -> bool:
    """Failures of the world, not of meetvar: bad video, broker down, busy port. One line, no traceback."""
    from gpu_service.backends.base import BackendUnavailable
    from ingest.errors import ChunkDecodeError, SourceError
    from stream_processors.kafka import BrokerUnavailable
    from stream_processors.tansu import BrokerStartError, TansuBinaryNotFound

    return isinstance(
        exc,
        SourceError
        | ChunkDecodeError
        | BrokerUnavailable
        | BrokerStartError
        | TansuBinaryNotFound
        | BackendUnavailable,
    )


if __name__ == "__main__":
    sys.exit(main())
