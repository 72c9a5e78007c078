"""Bad input by the thousand: property-based fuzzing of everything that reads bytes from outside.

Targets (each a hypothesis strategy of inputs and a function that feeds one input to the real code):

* ``schemas.<Msg>.parse`` for every topic's message, and ``unpack_chunk``: anything → the message or a
  :class:`~stream_processors.schemas.SchemaError`;
* ``chunk_decoder``: random and corrupted H.264/MPEG-TS chunks → frames or a
  :class:`~ingest.errors.ChunkDecodeError`;
* ``whip_sdp``: random and mutated SDP offers POSTed to the real WHIP route → 201 or a 4xx whose JSON
  body says what is wrong, never a 5xx;
* ``dashboard_openapi``: schemathesis cases from the dashboard's OpenAPI schema against the real app
  under uvicorn, signed in as the organizer → never a 5xx.

Each input ends as *accepted*, *rejected* (with the clear error above) or a *crash* (anything else),
and crashes are kept with an example. The test suite runs a few hundred inputs per target;
``meetvar bench fuzz --examples 10000 --json`` runs the long one.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

ACCEPTED, REJECTED = "accepted", "rejected"


@dataclass
class FuzzReport:
    target: str
    inputs: int = 0
    accepted: int = 0
    rejected: int = 0
    crashes: int = 0
    seconds: float = 0.0
    examples: list[str] = field(default_factory=list)  # the first few crashes: input and error

    def as_dict(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "accepted": self.accepted,
            "rejected_with_clear_error": self.rejected,
            "crashes": self.crashes,
            "seconds": round(self.seconds, 2),
            "crash_examples": self.examples,
        }


def run_target(name: str, strategy: st.SearchStrategy[Any], feed: Callable[[Any], str], n: int) -> FuzzReport:
    """Feed ``n`` generated inputs (fewer if the strategy runs out of distinct ones) to ``feed``."""
    report = FuzzReport(name)
    started = time.monotonic()

    @settings(
        max_examples=n,
        deadline=None,
        database=None,
        derandomize=False,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def one(value: Any) -> None:
        report.inputs += 1
        try:
            outcome = feed(value)
        except Exception as exc:
            report.crashes += 1
            if len(report.examples) < 5:
                report.examples.append(f"{type(exc).__name__}: {exc!s:.300} <- {value!r:.300}")
            return
        if outcome == ACCEPTED:
            report.accepted += 1
        else:
            report.rejected += 1

    one()
    report.seconds = time.monotonic() - started
    return report


# -- message parsers -----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


def _valid_samples() -> dict[str, dict[str, Any]]:
    frame = {"capture_us": 1_700_000_000_000_000, "track_id": 1, "keypoints": [[0.5, 0.5, 0.9]]}
    return {
        "PoseMsg": {
            "meet": "m",
            "platform": "p",
            "camera": "c",
            "stream_start_us": 1,
            "seq": 2,
            "frame": frame,
        },
        "DecisionMsg": {
            "attempt_id": "m/p/c/1",
            "meet": "m",
            "platform": "p",
            "camera": "c",
            "attempt": {"verdict": "good", "depth": {"status": "below", "margin_cm": 2.0}},
            "decided_us": 3,
        },
        "StateMsg": {"meet": "m", "platform": "p", "lifter": "A", "attempt_number": 1, "command": "rack"},
        "ExplanationMsg": {"attempt_id": "a", "text": "t", "model": "template", "prompt_hash": "h"},
        "ChunkMeta": {
            "meet": "m",
            "platform": "p",
            "camera": "c",
            "seq": 0,
            "stream_start_us": 1,
            "capture_us": [1, 2],
            "pts_us": [0, 1],
            "size": 4,
        },
    }


def _mutated(sample: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """A valid message with one field replaced by any JSON value, removed, or a stranger added."""
    keys = sorted(sample)

    def mutate(choice: tuple[str, str, Any]) -> bytes:
        how, key, value = choice
        out = dict(sample)
        if how == "drop":
            out.pop(key, None)
        elif how == "set":
            out[key] = value
        else:
            out[f"x_{key}"] = value
        return json.dumps(out).encode()

    return st.tuples(st.sampled_from(["set", "drop", "add", "set"]), st.sampled_from(keys), json_values).map(
        mutate
    )


def message_bytes(sample: dict[str, Any]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.just(json.dumps(sample).encode()),
        st.binary(max_size=300),
        json_values.map(lambda v: json.dumps(v).encode()),
        _mutated(sample),
        _mutated(sample).map(lambda b: b[: len(b) // 2]),
        st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    )


def parser_targets() -> dict[str, tuple[st.SearchStrategy[Any], Callable[[Any], str]]]:
    from stream_processors import schemas

    out: dict[str, tuple[st.SearchStrategy[Any], Callable[[Any], str]]] = {}
    for name, sample in _valid_samples().items():
        cls = getattr(schemas, name)

        def feed(raw: bytes, cls: Any = cls) -> str:
            try:
                cls.parse(raw)
            except schemas.SchemaError:
                return REJECTED
            return ACCEPTED

        out[f"schemas.{name}.parse"] = (message_bytes(sample), feed)

    meta = _valid_samples()["ChunkMeta"]

    def packed(choice: tuple[bytes, bytes, int, int]) -> bytes:
        head, data, cut, flip = choice
        raw = bytearray(len(head).to_bytes(4, "big") + head + data)
        if raw and flip >= 0:
            raw[flip % len(raw)] ^= 0xFF
        return bytes(raw[: cut if cut >= 0 else len(raw)])

    chunk_msgs = st.one_of(
        st.binary(max_size=300),
        st.tuples(
            message_bytes(meta), st.binary(max_size=16), st.integers(-1, 400), st.integers(-1, 400)
        ).map(packed),
    )

    def feed_chunk(raw: bytes) -> str:
        try:
            schemas.unpack_chunk(raw)
        except schemas.SchemaError:
            return REJECTED
        return ACCEPTED

    out["schemas.unpack_chunk"] = (chunk_msgs, feed_chunk)
    return out


# -- the chunk decoder ---------------------------------------------------------------------------------

_SAMPLE_CHUNK: bytes | None = None
SAMPLE_FRAMES = 4


def sample_chunk() -> bytes:
    """A real chunk, small so that fuzzing is quick: 4 frames of 64×48 H.264 in MPEG-TS, one closed GOP."""
    global _SAMPLE_CHUNK
    if _SAMPLE_CHUNK is None:
        import av
        import numpy as np

        buf = io.BytesIO()
        with av.open(buf, "w", format="mpegts") as out:
            stream = out.add_stream("libx264", rate=30)
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
            stream.options = {"preset": "ultrafast", "g": "30", "bf": "0"}
            for i in range(SAMPLE_FRAMES):
                img = np.full((48, 64, 3), 40 * i, dtype=np.uint8)
                img[10:30, 10 + i : 30 + i] = 250
                for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        _SAMPLE_CHUNK = buf.getvalue()
    return _SAMPLE_CHUNK


def _corrupt(choice: tuple[int, list[tuple[int, int]], int, bytes]) -> bytes:
    """Flip bytes, cut, and splice junk into the real chunk."""
    how, flips, cut, junk = choice
    data = bytearray(sample_chunk())
    for pos, value in flips:
        data[pos % len(data)] = value
    if how == 1:
        data = data[: cut % (len(data) + 1)]
    elif how == 2:
        at = cut % (len(data) + 1)
        data = data[:at] + junk + data[at:]
    elif how == 3:
        data = data[cut % (len(data) + 1) :]
    return bytes(data)


def chunk_decoder_target() -> tuple[st.SearchStrategy[Any], Callable[[Any], str]]:
    from ingest.chunk_decoder import decode_chunk_yuv
    from ingest.errors import ChunkDecodeError

    corrupted = st.tuples(
        st.integers(0, 3),
        st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=8),
        st.integers(0, 1 << 20),
        st.binary(max_size=200),
    ).map(_corrupt)
    data = st.one_of(st.binary(max_size=2000), corrupted, corrupted)
    strategy = st.tuples(data, st.sampled_from([SAMPLE_FRAMES, SAMPLE_FRAMES, 1, 0, -1, 9]))

    def feed(value: tuple[bytes, int]) -> str:
        raw, expected = value
        try:
            frames = decode_chunk_yuv(raw, expected)
        except ChunkDecodeError as exc:
            if not str(exc):
                raise AssertionError("ChunkDecodeError without a message") from exc
            return REJECTED
        if len(frames) != expected:
            raise AssertionError(f"{len(frames)} frames returned, {expected} expected")
        return ACCEPTED

    return strategy, feed


# -- WHIP's SDP handling -------------------------------------------------------------------------------

_SDP_LINES = [
    "v=0",
    "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
    "s=-",
    "t=0 0",
    "a=group:BUNDLE 0",
    "m=video 9 UDP/TLS/RTP/SAVPF 96",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    "c=IN IP4 0.0.0.0",
    "a=mid:0",
    "a=sendonly",
    "a=sendrecv",
    "a=recvonly",
    "a=rtcp-mux",
    "a=rtpmap:96 VP8/90000",
    "a=rtpmap:96 H264/90000",
    "a=fmtp:96 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
    "a=ice-ufrag:abcd",
    "a=ice-pwd:abcdefghijklmnopqrstuvwx",
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32),
    "a=setup:actpass",
    "a=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host",
    "a=ssrc:1 cname:x",
    "a=msid:s t",
]


def _sdp(choice: tuple[list[str], list[tuple[int, str]], str]) -> str:
    lines, junk, sep = choice
    out = list(lines)
    for pos, text in junk:
        out.insert(pos % (len(out) + 1), text)
    return sep.join(out) + sep


def _valid_offer() -> str:
    return (
        "\r\n".join(
            [
                "v=0",
                "o=- 1 2 IN IP4 127.0.0.1",
                "s=-",
                "t=0 0",
                "a=group:BUNDLE 0",
                "m=video 9 UDP/TLS/RTP/SAVPF 96",
                "c=IN IP4 0.0.0.0",
                "a=mid:0",
                "a=sendonly",
                "a=rtcp-mux",
                "a=rtpmap:96 VP8/90000",
                "a=ice-ufrag:abcd",
                "a=ice-pwd:abcdefghijklmnopqrstuvwx",
                "a=fingerprint:sha-256 " + ":".join(["AB"] * 32),
                "a=setup:actpass",
            ]
        )
        + "\r\n"
    )


def sdp_offers() -> st.SearchStrategy[bytes]:
    line = st.one_of(
        st.sampled_from(_SDP_LINES),
        st.tuples(st.sampled_from("vosticmab"), st.text(max_size=40)).map(lambda t: f"{t[0]}={t[1]}"),
        st.tuples(st.sampled_from(_SDP_LINES), st.text(max_size=12)).map(lambda t: t[0] + t[1]),
        st.text(max_size=40),
    )
    structured = st.tuples(
        st.lists(line, max_size=25),
        st.lists(st.tuples(st.integers(0, 40), st.text(max_size=30)), max_size=3),
        st.sampled_from(["\r\n", "\n"]),
    ).map(_sdp)
    valid = _valid_offer()
    mutated = st.tuples(
        st.lists(st.integers(0, 14), max_size=3), st.lists(st.tuples(st.integers(0, 20), line), max_size=3)
    ).map(lambda t: _mutate_offer(valid, *t))
    return st.one_of(
        structured.map(lambda s: s.encode("utf-8", "surrogatepass")),
        mutated.map(lambda s: s.encode("utf-8", "surrogatepass")),
        st.binary(max_size=600),
    )


def _mutate_offer(valid: str, drop: list[int], add: list[tuple[int, str]]) -> str:
    lines = valid.split("\r\n")[:-1]
    for i in sorted(set(drop), reverse=True):
        if i < len(lines):
            del lines[i]
    for pos, text in add:
        lines.insert(pos % (len(lines) + 1), text)
    return "\r\n".join(lines) + "\r\n"


class _NullProducer:
    async def send_and_wait(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def send(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def stop(self) -> None:
        return None


@contextlib.contextmanager
def whip_client() -> Iterator[tuple[Any, str, str]]:
    """The real WHIP routes in a FastAPI app (no broker: chunks go to a producer that drops them)."""
    import tempfile

    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from ingest.whip import CameraTokens, WhipConfig, WhipService
    from stream_processors.object_store import LocalObjectStore

    with tempfile.TemporaryDirectory() as tmp:
        tokens = CameraTokens()
        token = tokens.issue("fuzz/p1/side")
        service = WhipService(
            "127.0.0.1:1", LocalObjectStore(tmp), tokens, WhipConfig(connect_timeout_s=5, media_timeout_s=5)
        )

        async def start() -> None:
            service._producer = _NullProducer()

        service.start = start  # type: ignore[method-assign]
        app = FastAPI()
        app.include_router(service.router())
        with TestClient(app) as client:
            yield client, token, "/whip/fuzz~p1~side"


def whip_target(client: Any, token: str, path: str) -> tuple[st.SearchStrategy[Any], Callable[[Any], str]]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"}

    def feed(body: bytes) -> str:
        r = client.post(path, content=body, headers=headers)
        if r.status_code == 201:
            client.delete(r.headers["location"], headers=headers)
            return ACCEPTED
        if 400 <= r.status_code < 500:
            message = r.json().get("error")
            if not isinstance(message, str) or not message:
                raise AssertionError(f"{r.status_code} without an error message: {r.text[:200]}")
            return REJECTED
        raise AssertionError(f"HTTP {r.status_code}: {r.text[:300]}")

    return sdp_offers(), feed


# -- the dashboard's OpenAPI, through schemathesis -----------------------------------------------------

SKIPPED_OPERATIONS = {("POST", "/api/logout")}  # it would end the fuzzing session itself


@contextlib.contextmanager
def dashboard_target() -> Iterator[tuple[st.SearchStrategy[Any], Callable[[Any], str]]]:
    """The dashboard under uvicorn with an organizer signed in, and schemathesis's cases for every
    operation of its OpenAPI schema (one strategy over all of them)."""
    import requests
    import schemathesis
    from argon2 import PasswordHasher
    from schemathesis.core.result import Ok

    from dashboard.app import create_app
    from dashboard.auth import ORGANIZER, Auth
    from dashboard.state import DashboardState
    from dashboard.store import DashboardStore

    store = DashboardStore(":memory:")
    hasher = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
    state = DashboardState(store, auth=Auth(store.engine, hasher=hasher))
    state.auth.create_user("organizer", ORGANIZER, "fuzz-organizer-password")
    with contextlib.suppress(ImportError):  # two real lifts on record when run from the source tree
        from tests.browser import synthetic_decisions

        for msg in synthetic_decisions([1.3, 0.6]):
            state.on_decision(msg)
    schema = schemathesis.openapi.from_dict(create_app(state).openapi())
    operations = []
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            raise RuntimeError(f"the dashboard's OpenAPI schema has an invalid operation: {result}")
        op = result.ok()
        if (op.method.upper(), op.path) not in SKIPPED_OPERATIONS:
            operations.append(op)
    strategy = st.one_of(*[op.as_strategy() for op in operations])
    with _served(create_app(state)) as url:
        session = requests.Session()
        session.headers["Origin"] = url
        login = {"name": "organizer", "password": "fuzz-organizer-password"}
        r = session.post(f"{url}/api/login", json=login)
        r.raise_for_status()

        def feed(case: Any) -> str:
            response = case.call(base_url=url, session=session, timeout=30)
            if response.status_code >= 500:
                raise AssertionError(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}"
                )
            return ACCEPTED if response.status_code < 400 else REJECTED

        yield strategy, feed


@contextlib.contextmanager
def _served(app: Any) -> Iterator[str]:
    """``app`` under uvicorn on a free loopback port, in a thread; yields its base URL."""
    import socket
    import threading

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the dashboard did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


# -- all of it -----------------------------------------------------------------------------------------


def run_all(
    examples: int, targets: set[str] | None = None, api_examples: int | None = None
) -> dict[str, Any]:
    """Every target with ``examples`` inputs (the API with ``api_examples``, default the same);
    ``targets``: name prefixes to run (default all)."""

    def want(name: str) -> bool:
        return targets is None or any(name.startswith(t) for t in targets)

    reports: list[FuzzReport] = []
    for name, (strategy, feed) in parser_targets().items():
        if want(name):
            reports.append(run_target(name, strategy, feed, examples))
    if want("chunk_decoder"):
        strategy, feed = chunk_decoder_target()
        reports.append(run_target("chunk_decoder", strategy, feed, examples))
    if want("whip_sdp"):
        with whip_client() as (client, token, path):
            strategy, feed = whip_target(client, token, path)
            reports.append(run_target("whip_sdp", strategy, feed, examples))
    if want("dashboard_openapi"):
        with dashboard_target() as (strategy, feed):
            reports.append(run_target("dashboard_openapi", strategy, feed, api_examples or examples))
    return {
        "examples_per_target": examples,
        "targets": {r.target: r.as_dict() for r in reports},
        "inputs": sum(r.inputs for r in reports),
        "crashes": sum(r.crashes for r in reports),
    }
