"""Follow LiftingCast's live feed and turn it into ``meet.state``.

The wire format (see ``ARCHITECTURE.md``): a WebSocket at
``URL?meetId=ID&auth=BASE64(ID:PASSWORD)&apiKey=KEY``. The client sends the text ``ping`` every 30 s and
the server answers ``pong``; no message for 60 s means the link is dead (we reconnect, with exponential
backoff). Every other message is JSON, a partial ``MeetApiResponse`` whose top-level keys replace the
previous ones. A text message that is not JSON is an error the server sends before it closes (bad
password, another connection with the same API key): we stop and say why, and do not reconnect — the
hosted service allows one connection per key, and retrying a bad password helps nobody.

Per mapped platform, two kinds of ``meet.state`` come out (:class:`LiftingCastState`):

* the current attempt (lifter's name, lift, attempt number, weight in kg), whenever it changes;
* the official result of that attempt once all three referees' lights are in
  (``StateMsg.official``), once per attempt and set of lights.

Weights: LiftingCast keeps them in the meet's ``units``; ``LBS`` is converted to kg.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import structlog

from stream_processors.schemas import Official, OfficialLights, StateMsg

log = structlog.get_logger()

LB_KG = 0.45359237
LIFTS = {"squat": "squat", "bench": "bench", "dead": "dead", "deadlift": "dead"}

Publish = Callable[[StateMsg], Awaitable[None]]


class LiftingCastRefused(Exception):
    """The server sent an error frame (text that is not JSON) before closing: do not reconnect."""

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(f"LiftingCast refused the connection: {reason} (server said: {text[:200]!r})")
        self.reason = reason
        self.text = text


def explain_error(text: str) -> str:
    """What an error frame means, in a few words."""
    low = text.lower()
    if any(w in low for w in ("another", "already", "in use", "same key", "duplicate", "one connection")):
        return "another connection is using the same API key"
    if any(w in low for w in ("password", "auth", "unauthori", "forbidden", "credential")):
        return "bad meet id or password"
    if "key" in low:
        return "bad API key"
    return "the server sent an error"


def feed_url(url: str, meet_id: str, password: str, api_key: str | None = None) -> str:
    """``URL?meetId=ID&auth=BASE64(ID:PASSWORD)&apiKey=KEY`` (keeps a query the URL already has)."""
    parts = urlsplit(url)
    params = {"meetId": meet_id, "auth": base64.b64encode(f"{meet_id}:{password}".encode()).decode()}
    if api_key:
        params["apiKey"] = api_key
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _now_us() -> int:
    return time.time_ns() // 1000


def _decision(light: Any) -> str | None:
    value = light.get("decision") if isinstance(light, dict) else light
    return value if value in ("good", "bad") else None


@dataclass
class LiftingCastState:
    """The merged ``MeetApiResponse`` and what has been published from it, per mapped platform."""

    meet: str
    platforms: dict[str, str]  # LiftingCast platform id -> our platform name
    data: dict[str, Any] = field(default_factory=dict)
    _announced: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    _official: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def apply(self, update: dict[str, Any], at_us: int) -> list[StateMsg]:
        """Merge one partial response (its top-level keys replace ours) and return the new messages."""
        self.data.update(update)
        out: list[StateMsg] = []
        for lc_id, platform in self.platforms.items():
            out += self._platform(lc_id, platform, at_us)
        return out

    def _weight_kg(self, raw: Any) -> float | None:
        try:
            w = float(raw)
        except (TypeError, ValueError):
            return None
        if w <= 0:
            return None
        if str(self.data.get("units") or "").lower().startswith("lb"):
            w *= LB_KG
        return round(w, 2)

    def _current(self, p: dict[str, Any]) -> tuple[str | None, str | None, int | None, float | None] | None:
        cur = p.get("currentAttempt")
        if not isinstance(cur, dict):
            return None
        lift = LIFTS.get(str(cur.get("liftName") or "").lower())
        try:
            number: int | None = int(cur["attemptNumber"])
        except (KeyError, TypeError, ValueError):
            number = None
        lifter_ref = cur.get("lifter") or {}
        lifter_id = lifter_ref.get("id") if isinstance(lifter_ref, dict) else lifter_ref
        lifter = (self.data.get("lifters") or {}).get(lifter_id) if lifter_id is not None else None
        name = lifter.get("name") if isinstance(lifter, dict) else None
        weight = None
        if isinstance(lifter, dict) and lift and number is not None:
            lifts = lifter.get("lifts") or {}
            entry = (lifts.get(cur.get("liftName")) or lifts.get(lift) or {}).get(str(number)) or {}
            weight = self._weight_kg(entry.get("weight")) if isinstance(entry, dict) else None
        return name, lift, number, weight

    def _state(
        self,
        platform: str,
        current: tuple[str | None, str | None, int | None, float | None],
        at_us: int,
        official: Official | None = None,
    ) -> StateMsg:
        """The attempt on the platform as ``meet.state`` carries it, with its official lights once in."""
        name, lift, number, weight = current
        return StateMsg(
            meet=self.meet,
            platform=platform,
            lifter=name,
            lift=lift,
            attempt_number=number,
            weight_kg=weight,
            at_us=at_us,
            official=official,
        )

    def _platform(self, lc_id: str, platform: str, at_us: int) -> list[StateMsg]:
        p = (self.data.get("platforms") or {}).get(lc_id)
        if not isinstance(p, dict):
            return []
        out: list[StateMsg] = []
        current = self._current(p)
        if current is not None and current != self._announced.get(lc_id):
            self._announced[lc_id] = current
            out.append(self._state(platform, current, at_us))
        raw = p.get("refLights") or {}
        lights = OfficialLights.model_validate({k: _decision(raw.get(k)) for k in ("left", "head", "right")})
        if current is not None and lights.complete():
            key = (*current[:3], lights.left, lights.head, lights.right)
            if key != self._official.get(lc_id):
                self._official[lc_id] = key
                official = Official(lights=lights, result=lights.result(), source="liftingcast")
                out.append(self._state(platform, current, at_us, official))
        return out


@dataclass
class FeedStats:
    connections: int = 0
    messages: int = 0
    published: int = 0
    pongs: int = 0
    dead_links: int = 0


class LiftingCastFeed:
    """Connects, heartbeats, reconnects with backoff, and publishes ``meet.state`` until cancelled
    (or until the server refuses us: :class:`LiftingCastRefused`)."""

    def __init__(
        self,
        url: str,
        meet_id: str,
        password: str,
        *,
        meet: str,
        platforms: dict[str, str],
        publish: Publish,
        api_key: str | None = None,
        ping_interval_s: float = 30.0,
        dead_after_s: float = 60.0,
        backoff_s: float = 1.0,
        backoff_max_s: float = 30.0,
        max_connections: int | None = None,
        clock: Callable[[], int] = _now_us,
    ) -> None:
        self.url = feed_url(url, meet_id, password, api_key)
        self.state = LiftingCastState(meet, dict(platforms))
        self.publish = publish
        self.ping_interval_s = ping_interval_s
        self.dead_after_s = dead_after_s
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.max_connections = max_connections  # tests: stop after this many connections
        self.clock = clock
        self.stats = FeedStats()

    async def run(self) -> FeedStats:
        import websockets

        delay = self.backoff_s
        while self.max_connections is None or self.stats.connections < self.max_connections:
            got_message = False
            try:
                async with websockets.connect(
                    self.url, ping_interval=None, close_timeout=2, open_timeout=10, max_size=2**24
                ) as ws:
                    self.stats.connections += 1
                    log.info("liftingcast.connected", connection=self.stats.connections)
                    got_message = await self._session(ws)
            except LiftingCastRefused:
                raise
            except websockets.InvalidStatus as exc:
                status = exc.response.status_code
                if status in (401, 403):
                    raise LiftingCastRefused("bad meet id, password or API key", f"HTTP {status}") from None
                log.warning("liftingcast.handshake_failed", status=status)
            except (TimeoutError, OSError, websockets.WebSocketException) as exc:
                log.warning("liftingcast.link_lost", error=str(exc) or type(exc).__name__)
            if got_message:
                delay = self.backoff_s  # the link worked: start the backoff over
            if self.max_connections is not None and self.stats.connections >= self.max_connections:
                break
            log.info("liftingcast.reconnecting", in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff_max_s)
        return self.stats

    async def _session(self, ws: Any) -> bool:
        """One connection: until it closes or goes silent. Returns whether any message came."""
        got = False
        pinger = asyncio.create_task(self._ping(ws))
        try:
            while True:
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout=self.dead_after_s)
                except TimeoutError:
                    self.stats.dead_links += 1
                    log.warning("liftingcast.dead_link", silent_s=self.dead_after_s)
                    return got
                got = True
                await self._message(raw)
        except Exception as exc:
            import websockets

            if isinstance(exc, websockets.ConnectionClosed):
                log.warning("liftingcast.closed", code=exc.rcvd.code if exc.rcvd else None)
                return got
            raise
        finally:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pinger
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2)

    async def _ping(self, ws: Any) -> None:
        while True:
            await asyncio.sleep(self.ping_interval_s)
            await ws.send("ping")

    async def _message(self, raw: str | bytes) -> None:
        self.stats.messages += 1
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        if text.strip() == "pong":
            self.stats.pongs += 1
            return
        try:
            update = json.loads(text)
        except ValueError:
            raise LiftingCastRefused(explain_error(text), text) from None
        if not isinstance(update, dict):
            log.warning("liftingcast.unexpected_json", kind=type(update).__name__)
            return
        for msg in self.state.apply(update, self.clock()):
            await self.publish(msg)
            self.stats.published += 1


def parse_platforms(items: list[str]) -> dict[str, str]:
    """``LC_PLATFORM_ID=PLATFORM`` pairs into a mapping; ValueError says which one is wrong."""
    out: dict[str, str] = {}
    for item in items:
        lc_id, sep, platform = item.partition("=")
        if not sep or not lc_id or not platform or "/" in platform:
            raise ValueError(
                f"--platform {item!r} must look like LC_PLATFORM_ID=PLATFORM, e.g. p1=platform-1"
            )
        out[lc_id] = platform
    return out


async def kafka_publisher(
    bootstrap: str, topic: str | None = None
) -> tuple[Publish, Callable[[], Awaitable[None]]]:
    """A ``publish`` to ``meet.state`` keyed ``meet/platform``, and the function that stops it."""
    from stream_processors.kafka import ensure_topics, make_producer, wait_for_broker
    from stream_processors.topics import MEET_STATE, platform_key

    name = topic or MEET_STATE
    await wait_for_broker(bootstrap, timeout=10)
    await ensure_topics(bootstrap, [name])
    producer = make_producer(bootstrap)
    await producer.start()

    async def publish(msg: StateMsg) -> None:
        await producer.send_and_wait(name, msg.dump(), key=platform_key(msg.meet, msg.platform).encode())
        log.info(
            "liftingcast.published",
            platform=msg.platform,
            lifter=msg.lifter,
            lift=msg.lift,
            attempt=msg.attempt_number,
            official=None if msg.official is None else msg.official.result,
        )

    return publish, producer.stop
