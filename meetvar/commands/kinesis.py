"""``meetvar kinesis``: a Kinesis Video stream as a platform camera (GetMedia → ``video.chunks``).

AWS credentials and region come from the usual places (``AWS_*`` variables, a profile, a role).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from meetvar.errors import UserError
from meetvar.settings import env_option


def register(sub: Any) -> None:
    p = sub.add_parser("kinesis", help="ingest a Kinesis Video stream (GetMedia) as one camera")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--stream", help="Kinesis Video stream name")
    which.add_argument("--stream-arn", help="Kinesis Video stream ARN")
    env_option(p, "--camera", env="MEETVAR_CAMERA", required=True, help="camera id meet/platform/camera")
    env_option(p, "--broker", env="MEETVAR_BROKER", required=True, help="Kafka bootstrap HOST:PORT")
    env_option(
        p,
        "--store",
        env="MEETVAR_STORE",
        required=True,
        help="object store for large chunks: folder or s3://bucket?endpoint=",
    )
    p.add_argument("--region", help="AWS region (default: from the environment or profile)")
    p.add_argument("--endpoint-url", help="Kinesis Video control-plane endpoint (LocalStack, a VPC endpoint)")
    p.add_argument(
        "--start",
        default="now",
        help="now (default), earliest, fragment:N, after:N or producer:EPOCH_SECONDS",
    )
    p.add_argument("--fps", type=float, help="frame rate for chunk lengths if the stream does not say (30)")
    p.add_argument(
        "--once",
        action="store_true",
        help="stop when GetMedia ends its response instead of following the live stream",
    )
    p.set_defaults(func=cmd_kinesis)


def cmd_kinesis(args: argparse.Namespace) -> int:
    from ingest.kinesis import KinesisVideoSource, StartSelector
    from ingest.publisher import CameraId
    from stream_processors.object_store import ObjectStoreError, object_store_from_url

    try:
        camera = CameraId.parse(args.camera)
        start = StartSelector.parse(args.start)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    try:
        store = object_store_from_url(args.store)
    except ObjectStoreError as exc:
        raise UserError(str(exc)) from None
    source = KinesisVideoSource(
        args.stream,
        stream_arn=args.stream_arn,
        region=args.region,
        endpoint_url=args.endpoint_url,
        start=start,
        follow=not args.once,
    )
    return asyncio.run(_run(args.broker, source, camera, store, args.fps))


async def _run(bootstrap: str, source: Any, camera: Any, store: Any, fps: float | None) -> int:
    import structlog

    from ingest.kinesis import publish_kinesis
    from meetvar.logs import configure
    from meetvar.services import _until_signalled
    from stream_processors.kafka import ensure_topics, make_producer, wait_for_broker
    from stream_processors.topics import ALL_TOPICS

    configure("kinesis")
    await wait_for_broker(bootstrap, timeout=10)
    await ensure_topics(bootstrap, ALL_TOPICS)
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        await _until_signalled(publish_kinesis(producer, source, camera, store, fps=fps))
    finally:
        source.close()
        await producer.stop()
        structlog.get_logger().info(
            "kinesis.stopped",
            last_fragment=source.last_fragment,
            reconnects=max(0, source.connects - 1),
            duplicates_dropped=source.duplicates_dropped,
        )
    return 0
