"""``meetvar replay``: publish an archived meet back into ``video.chunks`` with its original capture times,
so the pipeline makes the very same calls again (see :mod:`stream_processors.replay`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
from typing import Any

from meetvar.errors import UserError
from meetvar.settings import env_option


def _speed(text: str) -> float:
    """``max`` (as fast as the broker takes it) or a positive factor of real time."""
    if text.lower() in ("max", "0", "inf"):
        return 0.0
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"speed must be a positive number or 'max', got {text!r}")
    return value


def register(sub: Any) -> None:
    p = sub.add_parser("replay", help="publish an archived meet back into video.chunks, as if live")
    p.add_argument("--meet", required=True, help="the meet to replay (first part of the camera ids)")
    env_option(p, "--broker", env="MEETVAR_BROKER", required=True, help="Kafka bootstrap HOST:PORT")
    env_option(
        p,
        "--store",
        env="MEETVAR_STORE",
        required=True,
        help="the archive: a folder, file:///path or s3://bucket?endpoint=",
    )
    p.add_argument("--speed", type=_speed, default=1.0, help="1 = real time (default), 2 = twice, max")
    p.add_argument("--camera", help="only this meet/platform/camera")
    p.add_argument("--json", action="store_true", help="print the replay's figures as JSON")
    p.set_defaults(func=cmd_replay)


def cmd_replay(args: argparse.Namespace) -> int:
    from stream_processors.object_store import ObjectStoreError, object_store_from_url
    from stream_processors.replay import NothingArchived

    if args.camera and (len(args.camera.split("/")) != 3 or not args.camera.startswith(f"{args.meet}/")):
        raise UserError(f"--camera {args.camera!r} must look like {args.meet}/platform/camera")
    try:
        store = object_store_from_url(args.store)
        stats = asyncio.run(_replay(args.broker, store, args.meet, args.speed, args.camera))
    except (ObjectStoreError, NothingArchived) as exc:
        raise UserError(str(exc)) from None
    figures = {
        "meet": args.meet,
        "cameras": stats.cameras,
        "streams": stats.streams,
        "chunks": stats.chunks,
        "end_markers": stats.end_markers,
        "skipped": stats.skipped,
        "mb": round(stats.bytes / 1e6, 3),
        "media_s": round(stats.media_s, 3),
        "elapsed_s": round(stats.elapsed_s, 3),
        "speed_x": round(stats.speed, 2),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        print(
            f"replayed meet {args.meet}: {stats.chunks} chunks ({figures['mb']} MB) of {stats.streams}"
            f" stream(s), {figures['media_s']} s of video in {figures['elapsed_s']} s"
            f" ({figures['speed_x']}x real time)"
            + (f", {stats.skipped} unreadable chunk(s) skipped" if stats.skipped else "")
        )
    return 0 if not stats.skipped else 1


async def _replay(bootstrap: str, store: Any, meet: str, speed: float, camera: str | None) -> Any:
    from meetvar.logs import configure
    from stream_processors.kafka import ensure_topics, make_producer, wait_for_broker
    from stream_processors.replay import load_meet, replay_meet
    from stream_processors.topics import ALL_TOPICS

    configure("replay")
    load_meet(store, meet, camera=camera)  # fail fast, before touching the broker, if nothing is there
    await wait_for_broker(bootstrap, timeout=10)
    await ensure_topics(bootstrap, ALL_TOPICS)
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        return await replay_meet(producer, store, meet, speed=speed, camera=camera)
    finally:
        await producer.stop()
