"""Camera commands: ``meetvar camera URL`` (pull a live source in, reconnecting), ``meetvar whip-token``
(issue a camera's WHIP bearer token) and ``meetvar whip`` (a WHIP endpoint on its own, for when ingest
runs apart from the dashboard). Heavy imports stay inside the command functions so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import asyncio
from fractions import Fraction
from pathlib import Path
from typing import Any

from meetvar.errors import UserError
from meetvar.settings import env_option


def register(sub: Any) -> None:
    cam = sub.add_parser(
        "camera",
        help="pull a live camera (RTSP, RTMP, HTTP, file; SRT if FFmpeg has it) into video.chunks, "
        "reconnecting with back-off",
    )
    cam.add_argument("url", help="rtsp://…, rtmp://…, http(s)://…, srt://…, or a file")
    env_option(cam, "--broker", env="MEETVAR_BROKER", required=True, help="Kafka bootstrap HOST:PORT")
    env_option(cam, "--camera", env="MEETVAR_CAMERA", required=True, help="camera id meet/platform/camera")
    env_option(
        cam,
        "--store",
        env="MEETVAR_STORE",
        required=True,
        help="object store (folder or s3:// URL) for chunks above the inline limit",
    )
    cam.add_argument(
        "--speed", type=float, default=1.0, help="read at most this × real time (0 = as fast as it comes)"
    )
    cam.add_argument("--retry-initial", type=float, default=0.5, help="first reconnect delay, s")
    cam.add_argument("--retry-max", type=float, default=30.0, help="longest reconnect delay, s")
    cam.add_argument("--max-retries", type=int, default=None, help="give up after this many (default: never)")
    cam.add_argument("--timeout", type=float, default=10.0, help="open/read timeout of the source, s")
    cam.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="FFmpeg demuxer/protocol option, repeatable (rtsp:// defaults to rtsp_transport=tcp)",
    )
    cam.set_defaults(func=cmd_camera)

    tok = sub.add_parser("whip-token", help="issue a WHIP bearer token for a camera (kept hashed in a file)")
    tok.add_argument("camera", nargs="?", help="camera id meet/platform/camera (omit with --organizer)")
    env_option(
        tok,
        "--tokens",
        env="MEETVAR_WHIP_TOKENS",
        required=True,
        help="the tokens file (JSON of SHA-256 digests)",
    )
    tok.add_argument("--organizer", action="store_true", help="an organizer token (reads /whip/metrics)")
    tok.add_argument("--revoke", action="store_true", help="remove every token of the camera instead")
    tok.set_defaults(func=cmd_whip_token)

    whip = sub.add_parser("whip", help="a WHIP endpoint alone (POST /whip/meet~platform~camera)")
    env_option(whip, "--broker", env="MEETVAR_BROKER", required=True, help="Kafka bootstrap HOST:PORT")
    env_option(whip, "--store", env="MEETVAR_STORE", required=True, help="claim-check store: folder or s3://")
    env_option(
        whip,
        "--tokens",
        env="MEETVAR_WHIP_TOKENS",
        required=True,
        help="tokens file written by meetvar whip-token",
    )
    env_option(
        whip,
        "--host",
        env="MEETVAR_HOST",
        default="0.0.0.0",
        help="listen address (cameras are on the LAN)",
    )
    env_option(whip, "--port", env="MEETVAR_PORT", type=int, default=8000, help="listen port")
    whip.add_argument("--stun", action="append", default=[], help="STUN/TURN URL, repeatable (default none)")
    whip.set_defaults(func=cmd_whip)


def _options(url: str, items: list[str]) -> dict[str, str]:
    options = {"rtsp_transport": "tcp"} if url.startswith(("rtsp://", "rtsps://")) else {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--option {item!r} must look like KEY=VALUE, e.g. rtsp_transport=udp")
        options[key] = value
    return options


def _camera(text: str) -> Any:
    from ingest.publisher import CameraId

    try:
        return CameraId.parse(text)
    except ValueError as exc:
        raise UserError(f"{exc}, e.g. open2026/platform-1/side") from exc


def cmd_camera(args: argparse.Namespace) -> int:
    return asyncio.run(_run_camera(args))


async def _run_camera(args: argparse.Namespace) -> int:
    import structlog

    from ingest.live import LiveChunkPipeline, MetricsRegistry
    from ingest.sources.file import is_url, open_source
    from ingest.sources.pull import Backoff, PullCamera
    from meetvar.logs import configure
    from meetvar.services import _until_signalled, open_store
    from stream_processors.kafka import ensure_topics, make_producer, wait_for_broker
    from stream_processors.topics import ALL_TOPICS

    configure("camera")
    log = structlog.get_logger()
    camera = _camera(args.camera)
    try:
        backoff = Backoff(initial_s=args.retry_initial, max_s=args.retry_max)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    options = _options(args.url, args.option)
    if not is_url(args.url):  # a file that cannot be read will not get better: say so before starting
        await asyncio.to_thread(lambda: open_source(args.url, options=options).close())
    store = open_store(args.store, writer=True)
    await wait_for_broker(args.broker, timeout=10)
    await ensure_topics(args.broker, ALL_TOPICS)
    producer = make_producer(args.broker)
    await producer.start()
    metrics = MetricsRegistry().camera(camera.key)

    def new_pipeline(fps: Fraction) -> LiveChunkPipeline:
        return LiveChunkPipeline(producer, camera, store, metrics, fps=fps)

    puller = PullCamera(
        args.url,
        new_pipeline,
        metrics,
        backoff=backoff,
        max_retries=args.max_retries,
        speed=args.speed,
        timeout_s=args.timeout,
        options=options,
    )
    log.info("camera.start", camera=camera.key, url=args.url, options=options)
    try:
        await _until_signalled(puller.run())
    finally:
        puller.stop()
        await producer.stop()
        log.info("camera.stop", **metrics.snapshot())
    return 0


def cmd_whip_token(args: argparse.Namespace) -> int:
    from ingest.whip import CameraTokens

    path = Path(args.tokens)
    tokens = CameraTokens.load(path)
    if args.organizer:
        token = tokens.issue_organizer()
        what = "organizer (reads GET /whip/metrics)"
    else:
        if not args.camera:
            raise UserError("give the camera id (meet/platform/camera), or --organizer")
        camera = _camera(args.camera).key
        if args.revoke:
            tokens.revoke(camera)
            tokens.save(path)
            print(f"revoked every WHIP token of {camera} in {path}")
            return 0
        token = tokens.issue(camera)
        what = f"{camera} (WHIP URL path /whip/{camera.replace('/', '~')})"
    tokens.save(path)
    print(f"token for {what}; shown once, only its hash is kept in {path}:\n{token}")
    return 0


def cmd_whip(args: argparse.Namespace) -> int:
    import uvicorn
    from aiortc import RTCIceServer

    from ingest.whip import CameraTokens, WhipConfig, WhipService, whip_app
    from meetvar.logs import configure
    from meetvar.services import open_store

    configure("whip")
    path = Path(args.tokens)
    if not path.is_file():
        raise UserError(f"no tokens file {path} — issue one with: meetvar whip-token CAMERA --tokens {path}")
    config = WhipConfig(ice_servers=[RTCIceServer(urls=u) for u in args.stun])
    service = WhipService(args.broker, open_store(args.store, writer=True), CameraTokens.load(path), config)
    uvicorn.run(whip_app(service), host=args.host, port=args.port, log_level="warning")
    return 0
