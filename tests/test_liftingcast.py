"""LiftingCast's live feed into ``meet.state``, against a local server speaking its protocol on a real
socket: the feed, a dropped connection, a bad password, the ping/pong heartbeat and the silence rule."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from websockets.asyncio.server import ServerConnection, serve

from meetvar.meetsoftware.liftingcast import (
    LiftingCastFeed,
    LiftingCastRefused,
    LiftingCastState,
    feed_url,
    kafka_publisher,
    parse_platforms,
)
from stream_processors.schemas import StateMsg

MEET_ID, PASSWORD, KEY = "m-abc", "s3cret", "key-1"


def lights(left: str | None, head: str | None, right: str | None) -> dict[str, Any]:
    return {
        k: {"decision": v, "cards": {"red": False, "blue": False, "yellow": False}}
        for k, v in (("left", left), ("head", head), ("right", right))
    }


def lifter(lid: str, name: str, squats: list[float]) -> dict[str, Any]:
    return {
        "id": lid,
        "name": name,
        "team": "T",
        "bodyWeight": 82.5,
        "lot": 1,
        "flight": "A",
        "platform": "p1",
        "lifts": {
            "squat": {
                str(i + 1): {"id": f"{lid}-s{i + 1}", "weight": w, "result": None}
                for i, w in enumerate(squats)
            },
            "bench": {"1": {"id": f"{lid}-b1", "weight": 100, "result": None}},
        },
    }


LIFTERS = {"l1": lifter("l1", "Ann Smith", [140, 147.5]), "l2": lifter("l2", "Bea Jones", [120])}


def platform(lifter_id: str, lift: str, n: int, ref: dict[str, Any]) -> dict[str, Any]:
    return {
        "p1": {
            "id": "p1",
            "name": "Platform 1",
            "clockState": "initial",
            "currentAttempt": {
                "id": "a",
                "liftName": lift,
                "attemptNumber": str(n),
                "lifter": {"id": lifter_id},
            },
            "nextAttempts": [],
            "refLights": ref,
        },
        "p9": {"id": "p9", "name": "not mapped", "currentAttempt": None, "refLights": {}},
    }


# Two lifters, two squats: lights 2–1 good, then 0–3.
FEED: list[dict[str, Any]] = [
    {
        "name": "Test Open",
        "units": "KG",
        "lifters": LIFTERS,
        "platforms": platform("l1", "squat", 1, lights(None, None, None)),
    },
    {"platforms": platform("l1", "squat", 1, lights("good", None, None))},
    {"platforms": platform("l1", "squat", 1, lights("good", "good", "bad"))},
    {"platforms": platform("l2", "squat", 1, lights(None, None, None))},
    {"platforms": platform("l2", "squat", 1, lights("bad", "bad", "bad"))},
]


class Server:
    """A LiftingCast-protocol server: each connection runs the next script in ``scripts``."""

    def __init__(self, scripts: list[Callable[[ServerConnection], Any]]) -> None:
        self.scripts = scripts
        self.connections = 0
        self.queries: list[dict[str, list[str]]] = []
        self.pings = 0
        self.url = ""

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.queries.append(parse_qs(urlsplit(ws.request.path).query))
        script = self.scripts[min(self.connections, len(self.scripts) - 1)]
        self.connections += 1
        await script(ws)

    async def answer_pings(self, ws: ServerConnection, for_s: float) -> None:
        async def loop() -> None:
            async for m in ws:
                if m == "ping":
                    self.pings += 1
                    await ws.send("pong")

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(loop(), for_s)


@pytest.fixture
async def server() -> AsyncIterator[Callable[[list[Any]], Any]]:
    servers = []

    async def start(scripts: list[Any]) -> Server:
        s = Server(scripts)
        ws_server = await serve(s.handler, "127.0.0.1", 0)
        servers.append(ws_server)
        port = ws_server.sockets[0].getsockname()[1]
        s.url = f"ws://127.0.0.1:{port}/feed"
        return s

    yield start
    for ws_server in servers:
        ws_server.close()
        await ws_server.wait_closed()


def make_feed(url: str, out: list[StateMsg], **kw: Any) -> LiftingCastFeed:
    async def publish(msg: StateMsg) -> None:
        out.append(msg)

    defaults: dict[str, Any] = {
        "backoff_s": 0.05,
        "max_connections": 1,
        "ping_interval_s": 5,
        "dead_after_s": 5,
    }
    return LiftingCastFeed(
        url,
        MEET_ID,
        PASSWORD,
        api_key=KEY,
        meet="open",
        platforms={"p1": "platform-1"},
        publish=publish,
        **(defaults | kw),
    )


def summary(msgs: list[StateMsg]) -> list[tuple[Any, ...]]:
    return [
        (
            m.platform,
            m.lifter,
            m.lift,
            m.attempt_number,
            m.weight_kg,
            None if m.official is None else (m.official.lights.model_dump(), m.official.result),
        )
        for m in msgs
    ]


EXPECTED = [
    ("platform-1", "Ann Smith", "squat", 1, 140.0, None),
    (
        "platform-1",
        "Ann Smith",
        "squat",
        1,
        140.0,
        ({"left": "good", "head": "good", "right": "bad"}, "good"),
    ),
    ("platform-1", "Bea Jones", "squat", 1, 120.0, None),
    (
        "platform-1",
        "Bea Jones",
        "squat",
        1,
        120.0,
        ({"left": "bad", "head": "bad", "right": "bad"}, "no_lift"),
    ),
]


async def send_all(ws: ServerConnection, updates: list[dict[str, Any]]) -> None:
    for u in updates:
        await ws.send(json.dumps(u))
        await asyncio.sleep(0.01)


def test_url_carries_meet_id_auth_and_key() -> None:
    url = feed_url("wss://lc.example/live?v=2", "M", "pw", "K")
    q = parse_qs(urlsplit(url).query)
    assert q == {"v": ["2"], "meetId": ["M"], "auth": [base64.b64encode(b"M:pw").decode()], "apiKey": ["K"]}
    assert "apiKey" not in feed_url("ws://h/", "M", "pw")
    assert parse_platforms(["p1=platform-1", "p2=b"]) == {"p1": "platform-1", "p2": "b"}
    with pytest.raises(ValueError, match="LC_PLATFORM_ID=PLATFORM"):
        parse_platforms(["p1"])


def test_state_merges_top_level_keys_and_converts_pounds() -> None:
    state = LiftingCastState("open", {"p1": "platform-1"})
    first = state.apply({"units": "LBS", "lifters": LIFTERS, "platforms": platform("l1", "squat", 2, {})}, 5)
    assert [(m.lifter, m.attempt_number, m.weight_kg, m.at_us) for m in first] == [("Ann Smith", 2, 66.9, 5)]
    # a partial update without "lifters" keeps the lifters it had; the same attempt is not re-announced
    assert state.apply({"platforms": platform("l1", "squat", 2, lights("good", None, None))}, 6) == []
    bench = state.apply({"platforms": platform("l1", "bench", 1, {})}, 7)
    assert [(m.lift, m.weight_kg) for m in bench] == [("bench", 45.36)]


async def test_feed_publishes_attempts_and_official_lights(server: Any) -> None:
    async def script(ws: ServerConnection) -> None:
        await send_all(ws, FEED)

    srv = await server([script])
    out: list[StateMsg] = []
    stats = await make_feed(srv.url, out).run()
    assert srv.queries[0] == {
        "meetId": [MEET_ID],
        "auth": [base64.b64encode(f"{MEET_ID}:{PASSWORD}".encode()).decode()],
        "apiKey": [KEY],
    }
    assert summary(out) == EXPECTED
    assert stats.published == 4 and stats.connections == 1
    assert all(m.meet == "open" and m.at_us > 0 for m in out)


@pytest.mark.integration
async def test_feed_to_a_real_broker(server: Any, broker: Any) -> None:
    from stream_processors.kafka import make_consumer

    async def script(ws: ServerConnection) -> None:
        await send_all(ws, FEED)

    srv = await server([script])
    topic = f"meet.state-{uuid.uuid4().hex[:8]}"
    publish, stop = await kafka_publisher(broker.bootstrap, topic)
    try:
        feed = make_feed(srv.url, [])
        feed.publish = publish
        await feed.run()
    finally:
        await stop()
    consumer = make_consumer(broker.bootstrap, None, topic)
    await consumer.start()
    got: list[tuple[bytes, StateMsg]] = []
    try:
        while len(got) < 4:
            batches = await asyncio.wait_for(consumer.getmany(timeout_ms=500), 10)
            got += [(r.key, StateMsg.parse(r.value)) for rs in batches.values() for r in rs]
    finally:
        await consumer.stop()
    assert {k for k, _ in got} == {b"open/platform-1"}
    assert summary([m for _, m in got]) == EXPECTED


async def test_dropped_connection_reconnects_and_resumes(server: Any) -> None:
    async def first(ws: ServerConnection) -> None:
        await send_all(ws, FEED[:2])  # then the link drops mid-attempt

    async def second(ws: ServerConnection) -> None:
        # A fresh connection gets the whole state again, then the rest.
        await send_all(ws, [{**FEED[0], "platforms": FEED[1]["platforms"]}, *FEED[2:]])

    srv = await server([first, second])
    out: list[StateMsg] = []
    stats = await make_feed(srv.url, out, max_connections=2).run()
    assert srv.connections == 2 and stats.connections == 2
    assert summary(out) == EXPECTED  # the attempt in progress is not announced twice


async def test_bad_password_stops_without_reconnecting(server: Any) -> None:
    async def refuse(ws: ServerConnection) -> None:
        await ws.send("Invalid password for meet m-abc")
        await ws.close()

    srv = await server([refuse])
    with pytest.raises(LiftingCastRefused) as err:
        await make_feed(srv.url, [], max_connections=5).run()
    assert err.value.reason == "bad meet id or password"
    assert "\n" not in str(err.value)
    await asyncio.sleep(0.2)
    assert srv.connections == 1


async def test_second_connection_with_same_key_is_explained(server: Any) -> None:
    async def refuse(ws: ServerConnection) -> None:
        await ws.send("Another connection is already open with this API key")
        await ws.close()

    srv = await server([refuse])
    with pytest.raises(LiftingCastRefused, match="another connection is using the same API key"):
        await make_feed(srv.url, [], max_connections=5).run()
    assert srv.connections == 1


async def test_ping_pong_keeps_a_quiet_link_alive(server: Any) -> None:
    async def quiet(ws: ServerConnection) -> None:
        await ws.send(json.dumps(FEED[0]))
        await srv.answer_pings(ws, 1.0)  # nothing but pongs for longer than the silence limit

    srv = await server([quiet])
    out: list[StateMsg] = []
    stats = await make_feed(srv.url, out, ping_interval_s=0.1, dead_after_s=0.4).run()
    assert srv.pings >= 5 and stats.pongs >= 5
    assert stats.dead_links == 0
    assert len(out) == 1


async def test_silence_means_a_dead_link_and_a_reconnect(server: Any) -> None:
    async def silent(ws: ServerConnection) -> None:
        await ws.send(json.dumps(FEED[0]))
        await asyncio.sleep(3)  # answers no ping

    srv = await server([silent])
    stats = await make_feed(srv.url, [], ping_interval_s=0.1, dead_after_s=0.3, max_connections=2).run()
    assert stats.dead_links == 2
    assert srv.connections == 2


@pytest.mark.integration
async def test_cli_bad_password_is_one_line_and_exit_2(
    server: Any, broker: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from meetvar.cli import main

    async def refuse(ws: ServerConnection) -> None:
        await ws.send("Invalid password")
        await ws.close()

    srv = await server([refuse])
    args = [
        "liftingcast",
        srv.url,
        "--meet-id",
        "M",
        "--password",
        "x",
        "--broker",
        broker.bootstrap,
        "--meet",
        "open",
        "--platform",
        "p1=platform-1",
    ]
    code = await asyncio.to_thread(main, args)  # the CLI runs its own event loop
    assert srv.connections == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("meetvar: LiftingCast refused the connection: bad meet id or password")
