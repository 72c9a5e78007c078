"""WHIP (RFC 9725) ingest on aiortc: cameras (OBS 30+, a phone's browser) push WebRTC video to us.

Decisions (see docs/whip.md for the operator's view):

* **Camera id in the URL** is ``meet~platform~camera`` (``~`` is unreserved in URLs and never needed in
  our names), mapped onto the Kafka key ``meet/platform/camera``; each part is ``[A-Za-z0-9._-]+``.
* **A second POST for a live camera replaces the old session** (ends it, flushes its chunks and its
  end-of-stream, then answers the new offer) instead of answering 409: OBS and browsers reconnect
  after a network blip long before the old session's ICE consent expires (~30 s), and a 409 would turn
  that blip into half a minute without judging. Only the camera's token holder can do it.
* **Non-trickle ICE.** The answer is sent once ICE gathering is complete (aiortc's only mode); PATCH is
  answered 405, as the RFC asks of endpoints without trickle ICE or ICE restarts. No STUN/TURN servers
  unless configured: cameras sit on the venue LAN.
* **Auth.** ``Authorization: Bearer <token>`` per camera, from :class:`CameraTokens` (hashed at rest,
  constant-time compare); POST and DELETE need the camera's token, ``GET /whip/metrics`` any camera or
  organizer token. CORS allows any origin by default: a bearer token, not a cookie, is the credential.
* **Media.** The first video track is judged; audio and extra tracks are accepted (so every publisher
  negotiates) and discarded. A session ends on DELETE, on ICE failure, when the track ends, or when no
  frame arrives for ``media_timeout_s`` (a camera that vanished without a word); each end publishes
  the last chunk and an end-of-stream marker and records a gap in the camera's metrics.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any

import av
import httpx
import structlog
from aiokafka import AIOKafkaProducer
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import SessionDescription
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

from ingest.live import (
    DEFAULT_CHUNK_SECONDS,
    DEFAULT_FPS,
    DEFAULT_GAP_SECONDS,
    DEFAULT_MAX_BACKLOG,
    CaptureClock,
    LiveChunkPipeline,
    MetricsRegistry,
    wall_us,
)
from ingest.publisher import DEFAULT_INLINE_LIMIT, CameraId
from ingest.sources.file import FrameNormalizer
from stream_processors.kafka import ensure_topics, make_producer, wait_for_broker
from stream_processors.object_store import ObjectStore
from stream_processors.topics import VIDEO_CHUNKS

log = structlog.get_logger()

_PART = re.compile(r"^[A-Za-z0-9._-]+$")
_MAX_OFFER_BYTES = 64 * 1024


# -- camera ids ------------------------------------------------------------------------------------
def camera_from_path(camera_id: str) -> CameraId:
    """``meet~platform~camera`` → :class:`CameraId`; ``ValueError`` with a message a camera operator reads."""
    parts = camera_id.split("~")
    if len(parts) != 3 or not all(_PART.match(p) for p in parts):
        raise ValueError(
            f"camera id {camera_id!r} must look like meet~platform~camera (letters, digits, . _ -), "
            "e.g. /whip/open2026~platform-1~side"
        )
    return CameraId(*parts)


def camera_path_id(camera: CameraId | str) -> str:
    """The URL form of a camera key: ``meet/platform/camera`` → ``meet~platform~camera``."""
    key = camera.key if isinstance(camera, CameraId) else camera
    return key.replace("/", "~")


# -- tokens ----------------------------------------------------------------------------------------
def _new_token() -> str:
    # 256 random bits; never starting with "-", so it cannot be mistaken for an option when pasted.
    while (token := secrets.token_urlsafe(32)).startswith("-"):
        pass
    return token


def _digest(token: str) -> str:
    # Tokens are 256-bit random strings, so one SHA-256 is enough at rest (no password stretching).
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


class CameraTokens:
    """Bearer tokens the organizer issues: one or more per camera, plus organizer tokens (metrics only).

    Only SHA-256 digests are kept (in memory and in the JSON file), and a check compares against every
    digest of the camera with :func:`hmac.compare_digest`, so timing says nothing about the token.
    """

    def __init__(self) -> None:
        self._cameras: dict[str, list[str]] = {}
        self._organizer: list[str] = []

    def issue(self, camera: str) -> str:
        """A fresh token for ``meet/platform/camera``; shown once, stored only as a digest."""
        token = _new_token()
        self.add(camera, token)
        return token

    def issue_organizer(self) -> str:
        token = _new_token()
        self._organizer.append(_digest(token))
        return token

    def add(self, camera: str, token: str) -> None:
        """Register a token chosen elsewhere (e.g. typed into OBS beforehand); at least 16 characters."""
        CameraId.parse(camera)
        if len(token) < 16:
            raise ValueError("a camera token needs at least 16 characters; use CameraTokens.issue()")
        self._cameras.setdefault(camera, []).append(_digest(token))

    def revoke(self, camera: str) -> None:
        self._cameras.pop(camera, None)

    def allows(self, camera: str, token: str | None) -> bool:
        return token is not None and _matches(_digest(token), self._cameras.get(camera, []))

    def is_known(self, token: str | None) -> bool:
        """Any camera's or an organizer's token: enough to read metrics."""
        if token is None:
            return False
        digests = [d for ds in self._cameras.values() for d in ds] + self._organizer
        return _matches(_digest(token), digests)

    def cameras(self) -> list[str]:
        return sorted(self._cameras)

    def save(self, path: Path) -> None:
        data = {"cameras": self._cameras, "organizer": self._organizer}
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        path.chmod(0o600)

    @classmethod
    def load(cls, path: Path) -> CameraTokens:
        """Read a file written by :meth:`save` (``meetvar whip-token`` writes it); missing = no tokens."""
        tokens = cls()
        if not path.exists():
            return tokens
        data = json.loads(path.read_text(encoding="utf-8"))
        for camera, digests in data.get("cameras", {}).items():
            CameraId.parse(camera)
            tokens._cameras[camera] = [d for d in digests if d.startswith("sha256:")]
        tokens._organizer = [d for d in data.get("organizer", []) if d.startswith("sha256:")]
        return tokens


def _matches(digest: str, digests: list[str]) -> bool:
    found = False
    for d in digests:  # no early exit: the time taken does not depend on which entry matched
        found |= hmac.compare_digest(digest.encode(), d.encode())
    return found


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


# -- sessions --------------------------------------------------------------------------------------
@dataclass
class WhipConfig:
    """Knobs of the WHIP endpoint; the defaults suit cameras on a venue LAN."""

    ice_servers: Sequence[RTCIceServer] = ()
    media_timeout_s: float = 10.0  # no frame for this long (after the first) ends the session
    connect_timeout_s: float = 20.0  # no first frame for this long ends the session
    fps: float = DEFAULT_FPS  # nominal: only for the encoder's rate control; chunks go by duration
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS
    max_backlog: int = DEFAULT_MAX_BACKLOG
    gap_seconds: float = DEFAULT_GAP_SECONDS
    inline_limit: int = DEFAULT_INLINE_LIMIT
    allow_origin: str = "*"


@dataclass
class WhipSession:
    """One publisher's peer connection and the pipeline its video feeds."""

    id: str
    camera: CameraId
    pc: RTCPeerConnection
    pipeline: LiveChunkPipeline
    created_us: int = field(default_factory=wall_us)
    end_reason: str | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)  # side tracks, ICE watch
    consumer: asyncio.Task[None] | None = None  # the judged video track
    frames: int = 0
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def location(self) -> str:
        return f"/whip/{camera_path_id(self.camera)}/{self.id}"

    @property
    def etag(self) -> str:
        return f'"{self.id}"'


class BadOffer(ValueError):
    """The offer cannot be answered; the message goes back to the publisher in the 400."""


class WhipService:
    """Holds the live sessions, the Kafka producer and the metrics; :meth:`router` exposes it over HTTP."""

    def __init__(
        self,
        bootstrap: str,
        store: ObjectStore,
        tokens: CameraTokens,
        config: WhipConfig | None = None,
    ) -> None:
        self.bootstrap, self.store, self.tokens = bootstrap, store, tokens
        self.config = config or WhipConfig()
        self.metrics = MetricsRegistry()
        self.sessions: dict[str, WhipSession] = {}
        self._by_camera: dict[str, WhipSession] = {}
        self._camera_locks: dict[str, asyncio.Lock] = {}
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        await wait_for_broker(self.bootstrap, timeout=10)
        await ensure_topics(self.bootstrap, [VIDEO_CHUNKS])
        self._producer = make_producer(self.bootstrap)
        await self._producer.start()

    async def stop(self) -> None:
        """End every session properly (last chunk, end-of-stream), then stop the producer."""
        await asyncio.gather(*(self.end(s, "server shutdown") for s in list(self.sessions.values())))
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    @asynccontextmanager
    async def running(self, _: Any = None) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    # -- session lifecycle ---------------------------------------------------------------------------
    async def open(self, camera: CameraId, offer_sdp: str) -> tuple[WhipSession, str]:
        """Answer an offer: returns the session and the SDP answer (ICE gathering complete)."""
        if self._producer is None:
            raise RuntimeError("WhipService is not started")
        lock = self._camera_locks.setdefault(camera.key, asyncio.Lock())
        async with lock:
            cfg = self.config
            pc = RTCPeerConnection(RTCConfiguration(iceServers=list(cfg.ice_servers)))
            pipeline = LiveChunkPipeline(
                self._producer,
                camera,
                self.store,
                self.metrics.camera(camera.key),
                normalizer=FrameNormalizer(f"whip:{camera.key}"),
                fps=cfg.fps,
                chunk_seconds=cfg.chunk_seconds,
                max_backlog=cfg.max_backlog,
                gap_seconds=cfg.gap_seconds,
                inline_limit=cfg.inline_limit,
            )
            session = WhipSession(uuid.uuid4().hex, camera, pc, pipeline)
            try:
                answer = await self._negotiate(session, offer_sdp)
            except BaseException:
                for task in [*session.tasks, session.consumer]:
                    if task is not None:
                        task.cancel()
                await pc.close()
                raise
            # Only a usable offer replaces a live session. Its old stream ends (end-of-stream
            # published) before the answer leaves, so before any chunk of the new one can exist.
            old = self._by_camera.get(camera.key)
            if old is not None:
                log.warning("whip.session_replaced", camera=camera.key, old=old.id, new=session.id)
                await self.end(old, "replaced by a new session")
            self.sessions[session.id] = session
            self._by_camera[camera.key] = session
            log.info("whip.session_start", camera=camera.key, session=session.id)
            return session, answer

    async def _negotiate(self, session: WhipSession, offer_sdp: str) -> str:
        pc = session.pc
        video: list[MediaStreamTrack] = []

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video" and not video:
                video.append(track)
                session.consumer = asyncio.create_task(self._consume(session, track))
            else:  # audio, a second camera angle in one offer: negotiated, not judged
                session.tasks.append(asyncio.create_task(_discard(track)))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState == "failed":
                session.tasks.append(asyncio.create_task(self.end(session, "ICE connection failed")))

        _check_offer(offer_sdp)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except Exception as exc:  # aiortc raises whatever its parser trips on
            raise BadOffer(f"the SDP offer cannot be used: {exc or type(exc).__name__}") from exc
        if not video:
            raise BadOffer("the SDP offer sends no video (a=sendonly or a=sendrecv m=video section)")
        for transceiver in pc.getTransceivers():
            transceiver.direction = "recvonly"
        await pc.setLocalDescription(await pc.createAnswer())  # aiortc gathers ICE completely here
        return str(pc.localDescription.sdp)

    async def _consume(self, session: WhipSession, track: MediaStreamTrack) -> None:
        clock = CaptureClock()
        timeout = self.config.connect_timeout_s
        reason = "track ended"
        try:
            while True:
                try:
                    frame = await asyncio.wait_for(track.recv(), timeout)
                except MediaStreamError:
                    break
                except TimeoutError:
                    reason = f"no video for {timeout:g} s (camera gone?)"
                    break
                timeout = self.config.media_timeout_s
                if not isinstance(frame, av.VideoFrame):
                    continue
                arrival = wall_us()
                if frame.pts is None or frame.time_base is None:
                    media = arrival
                else:
                    media = round(frame.pts * Fraction(frame.time_base) * 1_000_000)
                session.frames += 1
                await session.pipeline.push(frame, clock.capture_us(media, arrival), arrival)
        except Exception:
            log.exception("whip.media_failed", camera=session.camera.key, session=session.id)
            reason = "media handling failed"
        if session.end_reason is None:  # else end() is already running and waits for this task
            await self.end(session, reason)

    async def end(self, session: WhipSession, reason: str) -> None:
        """Idempotent: close the peer connection, publish what was received, then the end-of-stream."""
        if session.end_reason is not None:
            await session.ended.wait()
            return
        session.end_reason = reason
        try:
            await session.pc.close()
            current = asyncio.current_task()
            for task in session.tasks:
                if task is not current:
                    task.cancel()  # audio and extra tracks: nothing to keep
            consumer = session.consumer
            if consumer is not None and consumer is not current:
                if session.frames == 0:
                    consumer.cancel()  # never connected: its track would wait for ever, holding nothing
                # Otherwise the closed receiver hands over the frames it still holds, then ends the track.
                _, late = await asyncio.wait({consumer}, timeout=5)
                for task in late:
                    log.error("whip.track_did_not_end", camera=session.camera.key, session=session.id)
                    task.cancel()
            await session.pipeline.close(reason)
        finally:
            self.sessions.pop(session.id, None)
            if self._by_camera.get(session.camera.key) is session:
                del self._by_camera[session.camera.key]
            session.ended.set()
            log.info("whip.session_end", camera=session.camera.key, session=session.id, reason=reason)

    def snapshot(self) -> dict[str, Any]:
        return {
            "cameras": self.metrics.snapshot(),
            "sessions": [
                {"id": s.id, "camera": s.camera.key, "since_us": s.created_us, "location": s.location}
                for s in self.sessions.values()
            ],
        }

    # -- HTTP ----------------------------------------------------------------------------------------
    def router(self) -> APIRouter:
        """``/whip/...`` routes; the router's lifespan starts and stops this service with the app."""
        router = APIRouter(lifespan=self.running)
        cors = {
            "Access-Control-Allow-Origin": self.config.allow_origin,
            "Access-Control-Allow-Methods": "OPTIONS, POST, DELETE, PATCH",
            "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
            "Access-Control-Expose-Headers": "Location, ETag, Link",
            "Access-Control-Max-Age": "600",
        }

        def error(status: int, message: str, **headers: str) -> JSONResponse:
            return JSONResponse({"error": message}, status_code=status, headers={**cors, **headers})

        def unauthorized() -> JSONResponse:
            return error(
                401,
                "missing or invalid bearer token for this camera — send 'Authorization: Bearer <token>' "
                "with the token the organizer issued for it",
                **{"WWW-Authenticate": 'Bearer realm="meetvar-whip"'},
            )

        @router.get("/whip/publish", response_class=HTMLResponse)
        async def publish_page() -> HTMLResponse:
            html = resources.files("ingest").joinpath("static/publish.html").read_text(encoding="utf-8")
            return HTMLResponse(html, headers={"Content-Security-Policy": _page_csp(html)})

        @router.get("/whip/metrics")
        async def metrics(request: Request) -> Response:
            if not self.tokens.is_known(_bearer(request)):
                return unauthorized()
            return JSONResponse(self.snapshot(), headers=cors)

        @router.options("/whip/{camera_id}")
        @router.options("/whip/{camera_id}/{session_id}")
        async def preflight() -> Response:
            return Response(status_code=204, headers={**cors, "Accept-Post": "application/sdp"})

        @router.post("/whip/{camera_id}")
        async def offer(camera_id: str, request: Request) -> Response:
            try:
                camera = camera_from_path(camera_id)
            except ValueError as exc:
                return error(400, str(exc))
            if not self.tokens.allows(camera.key, _bearer(request)):
                return unauthorized()
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/sdp":
                return error(400, f"Content-Type must be application/sdp (the SDP offer), got {ctype!r}")
            body = await request.body()
            if len(body) > _MAX_OFFER_BYTES:
                return error(400, f"SDP offer of {len(body)} bytes is larger than {_MAX_OFFER_BYTES}")
            try:
                session, answer = await self.open(camera, body.decode("utf-8", "replace"))
            except BadOffer as exc:
                return error(400, str(exc))
            headers = {**cors, "Location": session.location, "ETag": session.etag}
            if links := _ice_links(self.config.ice_servers):
                headers["Link"] = links
            return Response(answer, status_code=201, media_type="application/sdp", headers=headers)

        @router.delete("/whip/{camera_id}/{session_id}")
        async def delete(camera_id: str, session_id: str, request: Request) -> Response:
            try:
                camera = camera_from_path(camera_id)
            except ValueError as exc:
                return error(400, str(exc))
            if not self.tokens.allows(camera.key, _bearer(request)):
                return unauthorized()
            session = self.sessions.get(session_id)
            if session is None or session.camera != camera:
                return error(404, f"no live WHIP session {session_id} for camera {camera.key}")
            await self.end(session, "publisher ended the session (DELETE)")
            return Response(status_code=200, headers=cors)

        @router.patch("/whip/{camera_id}/{session_id}")
        async def patch() -> Response:
            return error(405, "trickle ICE and ICE restarts are not supported", Allow="DELETE, OPTIONS")

        return router


def whip_router(
    bootstrap: str, store: ObjectStore, tokens: CameraTokens, config: WhipConfig | None = None
) -> APIRouter:
    """The WHIP endpoint for any FastAPI app, e.g. ``create_app(state, routers=[whip_router(...)])``."""
    return WhipService(bootstrap, store, tokens, config).router()


def whip_app(service: WhipService) -> FastAPI:
    """A FastAPI app serving only WHIP, for an ingest process that runs apart from the dashboard."""
    app = FastAPI(title="meetvar WHIP ingest")
    app.include_router(service.router())
    return app


def _check_offer(offer_sdp: str) -> None:
    """What aiortc accepts but then fails on in a background task after the 201 (found by fuzzing,
    meetvar/benchmarks/fuzz.py): media without a DTLS fingerprint or ICE credentials. Refuse those
    with a 400."""
    try:
        parsed = SessionDescription.parse(offer_sdp)
    except Exception as exc:
        raise BadOffer(f"the SDP offer cannot be parsed: {exc or type(exc).__name__}") from exc
    for media in parsed.media:
        if media.kind not in ("audio", "video"):
            continue
        if media.dtls is None or not media.dtls.fingerprints:
            raise BadOffer(f"the SDP offer's {media.kind} section has no DTLS fingerprint (a=fingerprint)")
        if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
            raise BadOffer(
                f"the SDP offer's {media.kind} section has no ICE credentials (a=ice-ufrag, a=ice-pwd)"
            )


def _page_csp(html: str) -> str:
    """A strict CSP that allows exactly the page's own inline script and style (by hash): the page
    stays one file with no build step, and a host app's CSP (the dashboard's) cannot block it."""

    def hashes(tag: str) -> str:
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
        return " ".join(
            f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in blocks
        )

    return (
        f"default-src 'self'; script-src {hashes('script')}; style-src {hashes('style')}; "
        "connect-src 'self'; media-src 'self' blob: mediastream:; img-src 'self' data:; "
        "frame-ancestors 'none'"
    )


def _ice_links(servers: Sequence[RTCIceServer]) -> str:
    links = []
    for server in servers:
        urls = [server.urls] if isinstance(server.urls, str) else list(server.urls)
        for url in urls:
            extra = ""
            if server.username and server.credential:
                extra = f'; username="{server.username}"; credential="{server.credential}"'
            links.append(f'<{url}>; rel="ice-server"{extra}')
    return ", ".join(links)


async def _discard(track: MediaStreamTrack) -> None:
    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()


# -- client ----------------------------------------------------------------------------------------
class WhipClient:
    """A minimal WHIP publisher (non-trickle), for tests, benchmarks and headless cameras."""

    def __init__(self, endpoint: str, token: str, pc: RTCPeerConnection) -> None:
        self.endpoint, self.token, self.pc = endpoint, token, pc
        self.location: str | None = None

    async def publish(self, timeout: float = 10.0) -> str:
        """Offer (after ICE gathering), answer, connect; returns the session URL."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with httpx.AsyncClient(timeout=timeout) as http:
            r = await http.post(
                self.endpoint,
                content=self.pc.localDescription.sdp,
                headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {self.token}"},
            )
        if r.status_code != 201:
            raise RuntimeError(f"WHIP POST {self.endpoint}: {r.status_code} {r.text}")
        self.location = str(httpx.URL(self.endpoint).join(r.headers["location"]))
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=r.text, type="answer"))
        return self.location

    async def delete(self, timeout: float = 10.0) -> int:
        """End the session the polite way; returns the HTTP status. Closes the peer connection after."""
        assert self.location is not None, "publish first"
        async with httpx.AsyncClient(timeout=timeout) as http:
            r = await http.delete(self.location, headers={"Authorization": f"Bearer {self.token}"})
        await self.pc.close()
        return r.status_code
