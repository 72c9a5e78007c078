"""``meetvar archiver``: keep every chunk, decision, explanation, state change and audit entry of a meet
in the object store (see :mod:`stream_processors.archiver` for the layout and the guarantees)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from meetvar.errors import UserError
from meetvar.settings import env_option


def register(sub: Any) -> None:
    p = sub.add_parser(
        "archiver", help="archive video.chunks, decisions, explanations, meet.state and audit to a store"
    )
    env_option(p, "--broker", env="MEETVAR_BROKER", required=True, help="Kafka bootstrap HOST:PORT")
    env_option(
        p,
        "--store",
        env="MEETVAR_STORE",
        required=True,
        help="the archive: a folder, file:///path or s3://bucket[/prefix]?endpoint=URL"
        " (S3 credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)",
    )
    env_option(
        p,
        "--claims",
        env="MEETVAR_CLAIMS",
        help="the store ingest puts large chunks in (claim checks), if it is not the archive itself",
    )
    p.add_argument("--group", default="meetvar-archiver", help="consumer group (default meetvar-archiver)")
    p.add_argument("--write-threads", type=int, default=4, help="parallel writes to the store (default 4)")
    p.set_defaults(func=cmd_archiver)


def cmd_archiver(args: argparse.Namespace) -> int:
    from stream_processors.object_store import ObjectStoreError, S3ObjectStore, object_store_from_url

    try:
        archive = object_store_from_url(args.store)
        if isinstance(archive, S3ObjectStore):
            archive.ensure_bucket()  # also proves the endpoint and the credentials before we consume
        claims = object_store_from_url(args.claims) if args.claims else None
    except ObjectStoreError as exc:
        raise UserError(str(exc)) from None
    return asyncio.run(_serve(args.broker, archive, claims, args.group, args.write_threads))


async def _serve(bootstrap: str, archive: Any, claims: Any, group: str, write_threads: int) -> int:
    import structlog

    from meetvar.logs import configure
    from meetvar.services import _until_signalled
    from stream_processors.archiver import ARCHIVED_TOPICS, Archiver, run_archiver
    from stream_processors.kafka import ensure_topics, make_consumer, wait_for_broker
    from stream_processors.topics import ALL_TOPICS

    configure("archiver")
    log = structlog.get_logger()
    await wait_for_broker(bootstrap, timeout=10)
    await ensure_topics(bootstrap, ALL_TOPICS)
    consumer = make_consumer(bootstrap, group, *ARCHIVED_TOPICS)
    archiver = Archiver(archive, claims, write_threads=write_threads)
    await consumer.start()
    log.info("archiver.started", store=repr(archive), claims=repr(claims or archive), group=group)
    try:
        await _until_signalled(run_archiver(consumer, archiver))
    finally:
        await consumer.stop()
        archiver.close()
        log.info("archiver.stopped", **archiver.stats.as_dict())
    return 0
