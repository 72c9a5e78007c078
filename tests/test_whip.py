"""WHIP ingest against real parts: uvicorn on loopback, aiortc publishers, the Tansu broker, x264 chunks.

The synthetic cameras draw their frame counter and capture clock into each picture
(:class:`meetvar.benchmarks.ingest.BarcodeTrack`), so the test reads back, from the chunks in Kafka, exactly
which frames arrived and in what order.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import signal
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest
import uvicorn
from aiortc import RTCPeerConnection
from fastapi import FastAPI
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from ingest.chunk_decoder import decode_chunk
from ingest.live import CaptureClock, LiveChunkPipeline, MetricsRegistry
from ingest.publisher import CameraId
from ingest.whip import CameraTokens, WhipClient, WhipConfig, WhipService, camera_from_path, camera_path_id
from meetvar.benchmarks.ingest import BarcodeTrack, client_command, prefer_codec, read_barcode
from stream_processors.kafka import make_consumer, make_producer
from stream_processors.object_store import LocalObjectStore
from stream_processors.schemas import ChunkMeta, unpack_chunk
from stream_processors.tansu import TansuBroker, free_port
from stream_processors.topics import VIDEO_CHUNKS

FRAME_US = 33_333  # 30 fps on the 90 kHz RTP clock: 3000 ticks


@dataclass
class Whip:
    service: WhipService
    base: str
    tokens: CameraTokens
    organizer: str
    store: LocalObjectStore

    def camera(self) -> tuple[str, str, str]:
        """A fresh camera: (Kafka key, WHIP endpoint URL, its token)."""
        key = f"test/p1/cam-{uuid.uuid4().hex[:8]}"
        return key, f"{self.base}/whip/{camera_path_id(key)}", self.tokens.issue(key)

    async def metrics(self) -> dict[str, Any]:
        async with httpx.AsyncClient() as http:
            r = await http.get(
                f"{self.base}/whip/metrics", headers={"Authorization": f"Bearer {self.organizer}"}
            )
        r.raise_for_status()
        result: dict[str, Any] = r.json()
        return result


@contextlib.asynccontextmanager
async def whip_server(broker: TansuBroker, tmp_path: Path, **config: Any) -> AsyncIterator[Whip]:
    tokens = CameraTokens()
    organizer = tokens.issue_organizer()
    store = LocalObjectStore(tmp_path / "objects")
    service = WhipService(broker.bootstrap, store, tokens, WhipConfig(**config))
    app = FastAPI()
    app.include_router(service.router())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.02)
    try:
        yield Whip(service, f"http://127.0.0.1:{port}", tokens, organizer, store)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 20)


async def read_streams(broker: TansuBroker, key: str, streams: int, timeout: float = 20) -> list[ChunkMeta]:
    """Every chunk message of camera ``key`` (metadata, with the payload decoded into ``frames``) until
    ``streams`` end-of-stream markers have been read."""
    consumer = make_consumer(broker.bootstrap, None, VIDEO_CHUNKS)
    await consumer.start()
    out: list[ChunkMeta] = []
    try:
        async with asyncio.timeout(timeout):
            while sum(m.end_of_stream for m in out) < streams:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    out.extend(unpack_chunk(r.value)[0] for r in records if r.key == key.encode())
    finally:
        await consumer.stop()
    return out


async def counters(
    broker: TansuBroker, store: LocalObjectStore, key: str, metas: list[ChunkMeta]
) -> list[int]:
    """The frame counters drawn in the published frames, decoded from the chunks' bytes."""
    consumer = make_consumer(broker.bootstrap, None, VIDEO_CHUNKS)
    await consumer.start()
    wanted = {(m.stream_start_us, m.seq) for m in metas if not m.end_of_stream}
    found: dict[tuple[int, int], list[int]] = {}
    try:
        async with asyncio.timeout(20):
            while len(found) < len(wanted):
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for r in records:
                        if r.key != key.encode():
                            continue
                        meta, data = unpack_chunk(r.value)
                        if (meta.stream_start_us, meta.seq) in wanted:
                            payload = store.get(meta.ref) if meta.ref else data
                            frames = decode_chunk(payload, len(meta.capture_us))
                            found[(meta.stream_start_us, meta.seq)] = [read_barcode(f)[0] for f in frames]
    finally:
        await consumer.stop()
    return [c for k in sorted(found) for c in found[k]]


async def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def settled(whip: Whip, key: str) -> None:
    """Until the server's frame count for ``key`` stops moving (the publisher has nothing in flight)."""
    last = -1
    while True:
        now = (await whip.metrics())["cameras"][key]["frames_in"]
        if now == last:
            return
        last = now
        await asyncio.sleep(0.4)


def check_stream(metas: list[ChunkMeta]) -> None:
    """One stream: seq and frame indices contiguous, capture times strictly increasing, EOS last."""
    assert metas[-1].end_of_stream and not any(m.end_of_stream for m in metas[:-1])
    assert [m.seq for m in metas] == list(range(len(metas)))
    index = 0
    for m in metas:
        assert m.first_frame_index == index
        index += len(m.capture_us)
    capture = [t for m in metas for t in m.capture_us]
    assert all(b > a for a, b in itertools.pairwise(capture))
    assert len({m.stream_start_us for m in metas}) == 1


# -- a camera over WHIP, from offer to end-of-stream --------------------------------------------------


async def test_whip_frames_reach_kafka_in_order_and_end_with_eos(broker: TansuBroker, tmp_path: Path) -> None:
    sent = 60
    async with whip_server(broker, tmp_path) as whip:
        key, endpoint, token = whip.camera()
        pc = RTCPeerConnection()
        track = BarcodeTrack(320, 240, 30, frames=sent)
        pc.addTrack(track)
        prefer_codec(pc, "vp8")  # the phone page's usual codec (OBS: H.264, the next test)
        client = WhipClient(endpoint, token, pc)
        location = await client.publish()
        assert location.startswith(f"{endpoint}/")
        await asyncio.wait_for(track.done.wait(), 15)
        await settled(whip, key)
        assert await client.delete() == 200
        async with httpx.AsyncClient() as http:  # the session is gone once DELETE has answered
            again = await http.delete(location, headers={"Authorization": f"Bearer {token}"})
        assert again.status_code == 404
        cam = (await whip.metrics())["cameras"][key]
        metas = await read_streams(broker, key, streams=1)
        got = await counters(broker, whip.store, key, metas)

    check_stream(metas)
    published = sum(len(m.capture_us) for m in metas)
    # The server publishes exactly what it received; aiortc's jitter buffer releases a frame only when
    # the next one starts, so the publisher's very last frame may never be handed over.
    assert published == cam["frames_in"] == cam["frames_out"] == len(got)
    assert sent - 2 <= len(got) <= sent
    assert got == list(range(got[0], got[0] + len(got))) and got[0] <= 1  # in order, none missing
    assert {(m.width, m.height) for m in metas[:-1]} == {(320, 240)}
    # Chunks are ~0.5 s: 15 frames at 30 fps, the last one partial. The first chunk may hold more: its
    # capture stamps come from the arrival-delay estimate, which settles over the first frames, and a
    # loaded machine delays those arrivals (seen: 22 frames under a full test run on two cores).
    assert [len(m.capture_us) for m in metas[1:-2]] == [15] * (len(metas) - 3)
    assert 15 <= len(metas[0].capture_us) <= 30
    capture = [t for m in metas for t in m.capture_us]
    steps = [b - a for a, b in itertools.pairwise(capture)]
    assert statistics.median(steps) == pytest.approx(FRAME_US, abs=2)  # spacing from RTP, not arrival
    # Capture times are the server's clock, a little after the camera made each frame.
    lag_ms = [(c - track.sent_us[k]) / 1000 for c, k in zip(capture, got, strict=True)]
    assert min(lag_ms) > -50 and max(lag_ms) < 500, (min(lag_ms), max(lag_ms))
    assert cam["state"] == "ended" and "DELETE" in cam["end_reason"]
    assert cam["gaps"][-1]["start_us"] == capture[-1] and cam["gaps"][-1]["end_us"] is None
    assert cam["latency_ms"]["samples"] == published and cam["latency_ms"]["p99"] < 2000


async def test_killed_camera_is_ended_while_another_keeps_flowing(
    broker: TansuBroker, tmp_path: Path
) -> None:
    async with whip_server(broker, tmp_path, media_timeout_s=2.0) as whip:
        key_a, endpoint_a, token_a = whip.camera()
        key_b, endpoint_b, token_b = whip.camera()
        # Camera A is another process (H.264, as OBS sends), SIGKILLed mid-stream: no DELETE, no BYE.
        proc = await asyncio.create_subprocess_exec(
            *client_command(endpoint_a, token_a, codec="h264"), stdout=asyncio.subprocess.PIPE
        )
        pc = RTCPeerConnection()
        pc.addTrack(BarcodeTrack(320, 240, 30))
        client_b = WhipClient(endpoint_b, token_b, pc)
        await client_b.publish()
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 20)
            assert json.loads(line)["event"] == "published"

            async def a_flows() -> bool:
                return bool((await whip.metrics())["cameras"].get(key_a, {}).get("frames_in", 0) >= 30)

            await wait_for(a_flows, 15, "camera A's frames")
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            killed_us = time.time_ns() // 1000

            async def a_ended() -> bool:
                return bool((await whip.metrics())["cameras"][key_a]["state"] == "ended")

            await wait_for(a_ended, 10, "the server to notice camera A is gone")
            snap = await whip.metrics()
            cam_a = snap["cameras"][key_a]
            b_at_a_end = snap["cameras"][key_b]["frames_in"]
            assert key_a not in {s["camera"] for s in snap["sessions"]}
            assert key_b in {s["camera"] for s in snap["sessions"]}

            async def b_goes_on() -> bool:
                return bool((await whip.metrics())["cameras"][key_b]["frames_in"] >= b_at_a_end + 30)

            await wait_for(b_goes_on, 5, "camera B to keep flowing after A's end")
        finally:
            if proc.returncode is None:
                proc.kill()
        assert await client_b.delete() == 200
        metas_a = await read_streams(broker, key_a, streams=1)
        metas_b = await read_streams(broker, key_b, streams=1)
        cam_b = (await whip.metrics())["cameras"][key_b]

    check_stream(metas_a)
    check_stream(metas_b)
    assert sum(len(m.capture_us) for m in metas_a) == cam_a["frames_in"] == cam_a["frames_out"]
    assert sum(len(m.capture_us) for m in metas_b) == cam_b["frames_in"]
    assert "no video" in cam_a["end_reason"] or "ICE" in cam_a["end_reason"], cam_a["end_reason"]
    gap = cam_a["gaps"][-1]
    last_a = metas_a[-2].capture_us[-1]
    assert gap["start_us"] == last_a and gap["end_us"] is None and gap["reason"] == cam_a["end_reason"]
    assert last_a <= killed_us
    # B's chunks kept coming after A's last frame, well past A's end.
    assert max(t for m in metas_b for t in m.capture_us) > last_a + 2_000_000


async def test_second_publisher_replaces_the_live_session(broker: TansuBroker, tmp_path: Path) -> None:
    async with whip_server(broker, tmp_path) as whip:
        key, endpoint, token = whip.camera()
        first_pc, second_pc = RTCPeerConnection(), RTCPeerConnection()
        first_pc.addTrack(BarcodeTrack(160, 120, 30))
        second_pc.addTrack(BarcodeTrack(160, 120, 30, frames=30))
        first, second = WhipClient(endpoint, token, first_pc), WhipClient(endpoint, token, second_pc)
        await first.publish()

        async def flowing() -> bool:
            return bool((await whip.metrics())["cameras"].get(key, {}).get("frames_in", 0) >= 20)

        await wait_for(flowing, 10, "the first session's frames")
        async with httpx.AsyncClient() as http:  # an offer that cannot be answered replaces nothing
            r = await http.post(
                endpoint,
                content="v=0\r\nnonsense",
                headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"},
            )
        assert r.status_code == 400
        assert [s["location"] for s in (await whip.metrics())["sessions"]] == [
            str(first.location).removeprefix(whip.base)
        ]
        await second.publish()
        assert first.location != second.location
        async with httpx.AsyncClient() as http:
            r = await http.delete(str(first.location), headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 404  # the first session was ended by the second POST
        await first_pc.close()
        await asyncio.sleep(1.5)
        assert await second.delete() == 200
        metas = await read_streams(broker, key, streams=2)
        cam = (await whip.metrics())["cameras"][key]

    starts = list(dict.fromkeys(m.stream_start_us for m in metas))
    assert len(starts) == 2 and cam["streams"] == 2
    one = [m for m in metas if m.stream_start_us == starts[0]]
    two = [m for m in metas if m.stream_start_us == starts[1]]
    check_stream(one)
    check_stream(two)
    assert metas.index(one[-1]) < metas.index(two[0])  # the old stream's EOS comes before the new stream
    assert cam["gaps"][0]["reason"] == "replaced by a new session"
    assert cam["gaps"][0]["end_us"] == two[0].capture_us[0]


# -- the HTTP contract ---------------------------------------------------------------------------------


async def test_whip_http_errors_are_clear(broker: TansuBroker, tmp_path: Path) -> None:
    async with whip_server(broker, tmp_path) as whip, httpx.AsyncClient(base_url=whip.base) as http:
        key, endpoint, token = whip.camera()
        other_key, _, other_token = whip.camera()
        path = endpoint.removeprefix(whip.base)
        sdp = {"Content-Type": "application/sdp"}

        r = await http.post(path, content="v=0\r\n", headers=sdp)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert "token" in r.json()["error"]
        for bad in ("wrong-token-0123456789", other_token, whip.organizer):
            r = await http.post(path, content="v=0\r\n", headers={**sdp, "Authorization": f"Bearer {bad}"})
            assert r.status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        r = await http.post(path, content="this is not SDP", headers={**sdp, **auth})
        assert r.status_code == 400 and "SDP offer" in r.json()["error"]
        r = await http.post(path, content="v=0\r\n", headers={"Content-Type": "application/json", **auth})
        assert r.status_code == 400 and "application/sdp" in r.json()["error"]
        r = await http.post("/whip/not-a-camera", content="v=0\r\n", headers={**sdp, **auth})
        assert r.status_code == 400 and "meet~platform~camera" in r.json()["error"]
        # An audio-only offer has nothing to judge.
        pc = RTCPeerConnection()
        pc.addTransceiver("audio", direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        r = await http.post(path, content=pc.localDescription.sdp, headers={**sdp, **auth})
        await pc.close()
        assert r.status_code == 400 and "no video" in r.json()["error"]

        r = await http.delete(f"{path}/{uuid.uuid4().hex}", headers=auth)
        assert r.status_code == 404 and "no live WHIP session" in r.json()["error"]
        r = await http.delete(f"{path}/{uuid.uuid4().hex}")
        assert r.status_code == 401
        r = await http.patch(f"{path}/{uuid.uuid4().hex}", headers=auth)
        assert r.status_code == 405

        r = await http.options(path, headers={"Origin": "https://example.org"})
        assert r.status_code == 204
        assert "POST" in r.headers["access-control-allow-methods"]
        assert "Authorization" in r.headers["access-control-allow-headers"]
        assert "Location" in r.headers["access-control-expose-headers"]

        assert (await http.get("/whip/metrics")).status_code == 401
        for reader in (token, whip.organizer):
            r = await http.get("/whip/metrics", headers={"Authorization": f"Bearer {reader}"})
            assert r.status_code == 200 and r.json()["sessions"] == []
        page = await http.get("/whip/publish")
        assert page.status_code == 200 and "getUserMedia" in page.text and "RTCPeerConnection" in page.text
        # Its inline script is allowed by hash, so a host app's strict CSP cannot break it.
        script = page.text.split("<script>", 1)[1].split("</script>", 1)[0]
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"script-src 'sha256-{digest}'" in page.headers["content-security-policy"]
    assert other_key != key


async def test_offer_answer_headers(broker: TansuBroker, tmp_path: Path) -> None:
    async with whip_server(broker, tmp_path) as whip:
        key, endpoint, token = whip.camera()
        pc = RTCPeerConnection()
        pc.addTrack(BarcodeTrack(160, 120, 30, frames=1))
        await pc.setLocalDescription(await pc.createOffer())
        async with httpx.AsyncClient() as http:
            r = await http.post(
                endpoint,
                content=pc.localDescription.sdp,
                headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"},
            )
            assert r.status_code == 201
            assert r.headers["content-type"] == "application/sdp"
            location = r.headers["location"]
            assert location.startswith(f"/whip/{camera_path_id(key)}/")
            assert r.headers["etag"].strip('"') == location.rsplit("/", 1)[1]
            assert "a=candidate:" in r.text and "a=end-of-candidates" in r.text  # ICE gathered: non-trickle
            assert "a=recvonly" in r.text
            d = await http.delete(whip.base + location, headers={"Authorization": f"Bearer {token}"})
            assert d.status_code == 200
        await pc.close()


# -- the parts ------------------------------------------------------------------------------------------


def test_camera_ids_map_between_url_and_kafka_key() -> None:
    cam = camera_from_path("open2026~platform-1~side.left")
    assert cam.key == "open2026/platform-1/side.left"
    assert camera_path_id(cam) == camera_path_id(cam.key) == "open2026~platform-1~side.left"
    for bad in ("a~b", "a~b~c~d", "a~~c", "a~b~c d", "a/b/c", "a~b~c%2F"):
        with pytest.raises(ValueError, match="meet~platform~camera"):
            camera_from_path(bad)


def test_tokens_are_hashed_at_rest_and_per_camera(tmp_path: Path) -> None:
    tokens = CameraTokens()
    side = tokens.issue("m/p/side")
    front = tokens.issue("m/p/front")
    organizer = tokens.issue_organizer()
    assert tokens.allows("m/p/side", side) and not tokens.allows("m/p/side", front)
    assert not tokens.allows("m/p/side", organizer) and not tokens.allows("m/p/side", None)
    assert tokens.is_known(organizer) and tokens.is_known(front) and not tokens.is_known("nope" * 8)
    path = tmp_path / "tokens.json"
    tokens.save(path)
    text = path.read_text()
    assert side not in text and front not in text and organizer not in text and "sha256:" in text
    loaded = CameraTokens.load(path)
    assert (
        loaded.allows("m/p/side", side)
        and loaded.is_known(organizer)
        and loaded.cameras()
        == [
            "m/p/front",
            "m/p/side",
        ]
    )
    with pytest.raises(ValueError, match="16 characters"):
        tokens.add("m/p/side", "short")


def test_capture_clock_takes_spacing_from_media_and_origin_from_arrival() -> None:
    clock = CaptureClock(window_s=5.0, discontinuity_s=1.0)
    base = 1_700_000_000_000_000
    jitter = [30_000, 5_000, 22_000, 3_000, 25_000, 3_000, 9_000, 3_000] * 10  # arrivals stay in order
    out = [clock.capture_us(k * FRAME_US, base + k * FRAME_US + j) for k, j in enumerate(jitter)]
    assert all(c <= base + k * FRAME_US + j for k, (c, j) in enumerate(zip(out, jitter, strict=True)))
    assert all(b > a for a, b in itertools.pairwise(out))
    # After the least-delayed frame (3 ms), capture = media + that delay: exact 33.333 ms spacing.
    assert out[3:] == [base + k * FRAME_US + 3_000 for k in range(3, len(out))]
    # The media clock jumps (encoder restart): re-anchored on the wall clock, still increasing.
    later = clock.capture_us(10 * FRAME_US, base + 81 * FRAME_US + 4_000)
    assert clock.resets == 1 and out[-1] < later <= base + 81 * FRAME_US + 4_000


async def test_pipeline_waits_instead_of_dropping_when_the_encoder_is_behind(
    broker: TansuBroker, tmp_path: Path
) -> None:
    key = f"test/p1/slow-{uuid.uuid4().hex[:8]}"
    metrics = MetricsRegistry().camera(key)
    producer = make_producer(broker.bootstrap)
    await producer.start()
    store = LocalObjectStore(tmp_path / "objects")
    pipeline = LiveChunkPipeline(producer, CameraId.parse(key), store, metrics, max_backlog=3)
    start = time.time_ns() // 1000
    try:
        for k in range(40):  # as fast as possible: far faster than x264 encodes
            yuv = np.full((240 * 3 // 2, 320), 128, np.uint8)
            draw = np.zeros_like(yuv)
            draw[:240] = (k * 6) % 200
            frame = av.VideoFrame.from_ndarray(yuv + draw, format="yuv420p")
            await pipeline.push(frame, start + k * FRAME_US)
            assert metrics.queue_depth <= 3
        await pipeline.close("test over")
    finally:
        await producer.stop()
    metas = await read_streams(broker, key, streams=1)
    check_stream(metas)
    assert metrics.backpressure_events > 0 and metrics.queue_max == 3
    assert sum(len(m.capture_us) for m in metas) == metrics.frames_out == 40  # every frame, none dropped
    assert [t for m in metas for t in m.capture_us] == [start + k * FRAME_US for k in range(40)]


# -- the phone page, in a real browser ---------------------------------------------------------------


def _chromium(profile: Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--use-fake-device-for-media-stream",  # a synthetic camera
        "--use-fake-ui-for-media-stream",  # the permission prompt, answered yes
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


async def test_phone_page_publishes_from_a_real_browser(broker: TansuBroker, tmp_path: Path) -> None:
    async with whip_server(broker, tmp_path) as whip:
        key, _, token = whip.camera()
        browser = await asyncio.to_thread(_chromium, tmp_path / "profile")
        try:

            def start() -> None:  # selenium blocks: off the loop that serves WHIP
                browser.get(f"{whip.base}/whip/publish?camera={camera_path_id(key)}")
                browser.find_element(By.ID, "token").send_keys(token)
                Select(browser.find_element(By.ID, "res")).select_by_value("640x480")
                browser.find_element(By.ID, "go").click()

            await asyncio.to_thread(start)

            async def flowing() -> bool:
                return bool((await whip.metrics())["cameras"].get(key, {}).get("frames_in", 0) >= 30)

            await wait_for(flowing, 20, "the browser's frames")
            status = await asyncio.to_thread(lambda: browser.find_element(By.ID, "status").text)
            assert status.startswith(f"Live: {camera_path_id(key)}"), status
            await asyncio.to_thread(lambda: browser.find_element(By.ID, "go").click())  # Stop → DELETE

            async def ended() -> bool:
                return bool((await whip.metrics())["cameras"][key]["state"] == "ended")

            await wait_for(ended, 10, "the page's DELETE")
            console = await asyncio.to_thread(browser.get_log, "browser")
        finally:
            await asyncio.to_thread(browser.quit)
        cam = (await whip.metrics())["cameras"][key]
        metas = await read_streams(broker, key, streams=1)

    check_stream(metas)
    assert "DELETE" in cam["end_reason"]
    assert {(m.width, m.height) for m in metas[:-1]} == {(640, 480)}
    assert sum(len(m.capture_us) for m in metas) == cam["frames_in"] == cam["frames_out"]
    assert [e for e in console if e["level"] == "SEVERE"] == []  # no CSP or script errors
