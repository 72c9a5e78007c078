"""`meetvar demo --once --liftingcast …` against a local server speaking LiftingCast's protocol on a real
socket — the meet director's view of the embedded default: two lifters, two squats, the referees' lights
2–1 good and then 0–3. Each attempt on ``GET /api/attempts`` must carry its lifter, weight, the official
lights and the result, under distinct ids, and a refused password must leave the rest of the demo running.

The server plays the meet as a meet director would: lifter 1 is called before the bar moves, the lights
come after the first squat's call, the next lifter is called, and her lights after the second call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.server import ServerConnection, serve

from stream_processors.kafka import make_consumer
from stream_processors.schemas import unpack_chunk
from stream_processors.tansu import free_port
from stream_processors.topics import VIDEO_CHUNKS
from tests.test_demo_e2e import left_behind, processes_mentioning
from tests.test_liftingcast import LIFTERS, MEET_ID, PASSWORD, lights, platform

LC_PLATFORM = "p1"


async def decisions_seen(port: int, wanted: int, seen: list[dict[str, Any]], timeout: float) -> None:
    """Follow the dashboard's WebSocket as the page does until ``wanted`` decisions have arrived."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws", open_timeout=2) as ws:
                while sum(e["type"] == "decision" for e in seen) < wanted:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(f"only saw {[e['type'] for e in seen]} in {timeout} s")
                    seen.append(json.loads(await asyncio.wait_for(ws.recv(), left)))
                return
        except (OSError, websockets.exceptions.InvalidHandshake):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)


def demo_command(port: int, data: Path, url: str) -> list[str]:
    """The demo with a LiftingCast feed; the password goes in MEETVAR_LIFTINGCAST_PASSWORD."""
    return [
        sys.executable,
        "-m",
        "meetvar.cli",
        "demo",
        "--once",
        "--port",
        str(port),
        "--data-dir",
        str(data),
        "--liftingcast",
        url,
        "--liftingcast-meet-id",
        MEET_ID,
        "--liftingcast-platform",
        LC_PLATFORM,
    ]


def stop(demo: subprocess.Popen[str]) -> tuple[int, str]:
    demo.send_signal(signal.SIGINT)
    try:
        code = demo.wait(timeout=30)
    except subprocess.TimeoutExpired:
        demo.kill()
        raise
    return code, demo.stdout.read() if demo.stdout else ""


@pytest.mark.integration
def test_demo_follows_liftingcast_lifters_weights_and_official_lights(tmp_path: Path) -> None:
    asyncio.run(_meet(tmp_path))
    assert left_behind(str(tmp_path)) == [], "the demo left processes behind"


async def _meet(tmp_path: Path) -> None:
    port = free_port()
    clip_started = asyncio.Event()
    started_at = 0.0
    queries: list[str] = []

    async def at_clip_time(seconds: float) -> None:
        """Wait until the clip's frame at ``seconds`` has been captured (the stream's clock is UTC)."""
        await clip_started.wait()
        await asyncio.sleep(max(0.0, started_at + seconds - time.time()))

    async def send(ws: ServerConnection, lifter_id: str, ref: dict[str, Any]) -> None:
        await ws.send(json.dumps({"platforms": platform(lifter_id, "squat", 1, ref)}))

    async def director(ws: ServerConnection) -> None:
        assert ws.request is not None
        queries.append(ws.request.path)
        first = {"name": "Test Open", "units": "KG", "lifters": LIFTERS}
        await ws.send(json.dumps(first | {"platforms": platform("l1", "squat", 1, lights(None, None, None))}))

        async def pongs() -> None:
            async for m in ws:
                if m == "ping":
                    await ws.send("pong")

        answering = asyncio.create_task(pongs())
        try:
            await at_clip_time(13.5)
            await send(ws, "l1", lights("good", "good", "bad"))
            await send(ws, "l2", lights(None, None, None))
            await at_clip_time(20.0)
            await send(ws, "l2", lights("bad", "bad", "bad"))
            await answering
        finally:
            answering.cancel()

    server = await serve(director, "127.0.0.1", 0)
    url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/feed"
    demo = subprocess.Popen(
        demo_command(port, tmp_path, url),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "MEETVAR_LIFTINGCAST_PASSWORD": PASSWORD},
    )
    seen: list[dict[str, Any]] = []
    lines: list[str] = []
    reader = asyncio.create_task(asyncio.to_thread(read_lines, demo, lines))
    try:
        # The clip's clock: the capture time of its first frame, from the first chunk on the broker.
        started_at = await stream_start_s(lines, timeout=120)
        clip_started.set()
        # The password is in no process's command line (it would be readable by any local user).
        assert processes_mentioning(PASSWORD) == []
        await decisions_seen(port, 2, seen, timeout=240)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            deadline = time.monotonic() + 30
            while True:
                attempts = (await http.get("/api/attempts")).json()
                if len(attempts) == 2 and all((a.get("official") or {}).get("result") for a in attempts):
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"official results never arrived: {json.dumps(attempts)[:2000]}")
                await asyncio.sleep(0.5)
    finally:
        code = await asyncio.to_thread(stop_quietly, demo)
        await reader
        server.close()
        await server.wait_closed()
    output = "".join(lines)
    assert code == 0, output
    assert "lifters and lights from LiftingCast" in output
    assert queries and f"meetId={MEET_ID}" in queries[0]

    first, second = sorted(attempts, key=lambda a: a["attempt"]["bottom_s"])
    named = [(a["lifter"], a["lift"], a["attempt_number"], a["weight_kg"]) for a in (first, second)]
    assert named == [("Ann Smith", "squat", 1, 140.0), ("Bea Jones", "squat", 1, 120.0)]
    assert first["official"] == {"lights": {"left": "good", "head": "good", "right": "bad"}, "result": "good"}
    assert second["official"] == {
        "lights": {"left": "bad", "head": "bad", "right": "bad"},
        "result": "no_lift",
    }
    # The ids name the meet's attempts, and differ.
    assert first["attempt_id"] != second["attempt_id"]
    assert "Ann%20Smith/squat/1" in first["attempt_id"] and "Bea%20Jones/squat/1" in second["attempt_id"]


def read_lines(demo: subprocess.Popen[str], into: list[str]) -> None:
    assert demo.stdout is not None
    for line in demo.stdout:
        into.append(line)


def stop_quietly(demo: subprocess.Popen[str]) -> int:
    demo.send_signal(signal.SIGINT)
    try:
        return demo.wait(timeout=30)
    except subprocess.TimeoutExpired:
        demo.kill()
        raise


async def stream_start_s(lines: list[str], timeout: float) -> float:
    """The first chunk's ``stream_start_us`` (s, UTC), read from the demo's broker (its address is in the
    demo's banner)."""
    deadline = time.monotonic() + timeout
    while not (found := re.search(r"Tansu \(Kafka protocol\) at (\S+),", "".join(lines))):
        assert time.monotonic() < deadline, f"no broker in the demo's output: {''.join(lines)}"
        await asyncio.sleep(0.1)
    consumer = make_consumer(found.group(1), None, VIDEO_CHUNKS)
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), deadline - time.monotonic())
        meta, _ = unpack_chunk(record.value or b"")
        return meta.stream_start_us / 1e6
    finally:
        await consumer.stop()


def service_state(data: Path, name: str) -> str | None:
    with contextlib.suppress(OSError, ValueError, KeyError):
        return str(json.loads((data / "supervisor.json").read_text())["services"][name]["state"])
    return None


@pytest.mark.integration
def test_demo_with_a_refused_liftingcast_password_says_why_and_keeps_running(tmp_path: Path) -> None:
    async def refuse(ws: ServerConnection) -> None:
        await ws.send("Invalid password for meet " + MEET_ID)
        with contextlib.suppress(Exception):
            await ws.wait_closed()

    async def run() -> tuple[int, str, dict[str, Any]]:
        server = await serve(refuse, "127.0.0.1", 0)
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/feed"
        port = free_port()
        demo = subprocess.Popen(
            [*demo_command(port, tmp_path, url), "--memory"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "MEETVAR_LIFTINGCAST_PASSWORD": "wrong"},
        )
        try:
            status: dict[str, Any] = {}
            deadline = time.monotonic() + 60
            while (status.get("liftingcast") or {}).get("state") != "failed":
                if time.monotonic() > deadline:
                    raise AssertionError(f"the refused feed was not left failed: {status}")
                await asyncio.sleep(0.5)
                with contextlib.suppress(OSError, ValueError):
                    status = json.loads((tmp_path / "supervisor.json").read_text())["services"]
            await asyncio.sleep(2)  # not restarted meanwhile
            status = json.loads((tmp_path / "supervisor.json").read_text())["services"]
            while True:  # the dashboard comes up: the rest of the demo runs on
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                        break
                assert time.monotonic() < deadline + 60, "the dashboard never came up"
                await asyncio.sleep(0.5)
        finally:
            code, output = await asyncio.to_thread(stop, demo)
            server.close()
            await server.wait_closed()
        return code, output, status

    code, output, status = asyncio.run(run())
    assert code == 0, output
    assert status["liftingcast"]["state"] == "failed" and status["liftingcast"]["restarts"] == 0
    assert status["dashboard"]["state"] == "running"
    lines = [line for line in output.splitlines() if "LiftingCast feed is not followed" in line]
    assert lines and "bad meet id or password" in lines[0], output
