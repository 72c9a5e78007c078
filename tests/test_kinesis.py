"""Kinesis Video Streams ingest: the control plane through moto's server, GetMedia from a local HTTP
server that speaks its response shape (``video/webm``, chunked, one MKV document per fragment with the
AWS_KINESISVIDEO_* tags), including a connection killed in the middle of a fragment.

The MKV is written here byte by byte (EBML), from H.264 that PyAV encodes: PyAV's muxer cannot put
SimpleTags into every fragment, and writing the framing ourselves keeps the test independent of the
reader it tests.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import av
import boto3
import numpy as np
import pytest

from ingest.chunk_decoder import decode_chunk
from ingest.errors import SourceError
from ingest.kinesis import (
    KinesisVideoSource,
    KvsError,
    MkvError,
    StartSelector,
    read_elements,
)
from stream_processors.kafka import make_consumer
from stream_processors.schemas import ChunkMeta, unpack_chunk
from stream_processors.tansu import TansuBroker, free_port
from stream_processors.topics import VIDEO_CHUNKS

REPO = Path(__file__).resolve().parents[1]
FPS = 25  # 40 ms per frame: exact in Matroska's default 1 ms timecodes
FRAMES_PER_FRAGMENT = 10
FRAGMENTS = 5
PRODUCER_START = Decimal("1767225600.000")  # 2026-01-01T00:00:00Z, seconds
WIDTH, HEIGHT = 160, 120
REGION = "us-east-1"


def luma(i: int) -> int:
    """Frame ``i`` is grey of this mean level: decoded frames tell which frame they are."""
    return 30 + 4 * i


def picture(i: int) -> np.ndarray:
    """Noise around ``luma(i)``: ~10 kB a frame, so a cut lands inside a fragment, not inside a read."""
    noise = np.random.default_rng(i).integers(-20, 21, (HEIGHT, WIDTH, 1))
    return np.repeat(np.clip(luma(i) + noise, 0, 255), 3, axis=2).astype(np.uint8)


# --- an MKV writer, as Kinesis Video frames GetMedia ---------------------------------------------

UNKNOWN = bytes([0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])


def _id(element_id: int) -> bytes:
    return element_id.to_bytes((element_id.bit_length() + 7) // 8, "big")


def _size(n: int) -> bytes:
    for length in range(1, 9):
        if n < (1 << (7 * length)) - 1:
            return ((1 << (7 * length)) | n).to_bytes(length, "big")
    raise ValueError(n)


def el(element_id: int, payload: bytes) -> bytes:
    return _id(element_id) + _size(len(payload)) + payload


def uint(element_id: int, value: int) -> bytes:
    return el(element_id, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def text(element_id: int, value: str) -> bytes:
    return el(element_id, value.encode())


def tags(**pairs: str) -> bytes:
    simple = b"".join(el(0x67C8, text(0x45A3, name) + text(0x4487, value)) for name, value in pairs.items())
    return el(0x1254C367, el(0x7373, el(0x63C0, b"") + simple))


@dataclass
class KvsFragment:
    number: str
    producer_ts: Decimal
    frame_capture_us: list[int]
    data: bytes  # as GetMedia sends it: its own MKV document, with trailing tags
    header: bytes  # EBML header, segment, info, tracks
    media: bytes  # fragment tags and the cluster


def encode_h264() -> tuple[bytes, list[tuple[bytes, bool]]]:
    """``FRAGMENTS × FRAMES_PER_FRAGMENT`` flat-grey frames as H.264 (avcC extradata, AVCC packets),
    a key frame at the start of every fragment, as a KVS producer makes them."""
    buf = io.BytesIO()
    out = av.open(buf, "w", format="matroska")
    stream = out.add_stream(
        "libx264",
        rate=FPS,
        options={
            "preset": "ultrafast",
            "x264-params": f"keyint={FRAMES_PER_FRAGMENT}:min-keyint=1:scenecut=0:bframes=0",
        },
    )
    stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    for i in range(FRAMES_PER_FRAGMENT * FRAGMENTS):
        frame = av.VideoFrame.from_ndarray(picture(i), format="rgb24")
        frame.pts = i
        frame.time_base = Fraction(1, FPS)
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))
    out.close()
    buf.seek(0)
    with av.open(buf, "r") as demux:
        vs = demux.streams.video[0]
        extradata = bytes(vs.codec_context.extradata or b"")
        packets = [(bytes(p), bool(p.is_keyframe)) for p in demux.demux(vs) if p.size]
    assert len(packets) == FRAMES_PER_FRAGMENT * FRAGMENTS
    assert all(packets[i][1] for i in range(0, len(packets), FRAMES_PER_FRAGMENT))
    return extradata, packets


def kvs_fragments() -> list[KvsFragment]:
    extradata, packets = encode_h264()
    ebml = el(
        0x1A45DFA3,
        uint(0x4286, 1) + uint(0x42F7, 1) + uint(0x42F2, 4) + uint(0x42F3, 8) + text(0x4282, "matroska")
        + uint(0x4287, 4) + uint(0x4285, 2),
    )  # fmt: skip
    info = el(0x1549A966, uint(0x2AD7B1, 1_000_000) + text(0x4D80, "meetvar-test"))
    track = el(
        0xAE,
        uint(0xD7, 1) + uint(0x73C5, 1) + uint(0x83, 1) + text(0x86, "V_MPEG4/ISO/AVC")
        + el(0x63A2, extradata) + el(0xE0, uint(0xB0, WIDTH) + uint(0xBA, HEIGHT)),
    )  # fmt: skip
    tracks = el(0x1654AE6B, track)
    frame_ms = 1000 // FPS
    out = []
    for f in range(FRAGMENTS):
        number = f"9134385233318{f:04d}92682062607743920146264860453"  # KVS numbers are long decimal strings
        first = f * FRAMES_PER_FRAGMENT
        producer = PRODUCER_START + Decimal(first * frame_ms) / 1000
        cluster_ms = int(producer * 1000)  # KVS clusters carry absolute producer time in ms
        blocks = b""
        for k in range(FRAMES_PER_FRAGMENT):
            data, key = packets[first + k]
            header = b"\x81" + (k * frame_ms).to_bytes(2, "big", signed=True) + (b"\x80" if key else b"\x00")
            blocks += el(0xA3, header + data)
        media = (
            tags(
                AWS_KINESISVIDEO_FRAGMENT_NUMBER=number,
                AWS_KINESISVIDEO_SERVER_TIMESTAMP=str(producer + Decimal("0.250")),
                AWS_KINESISVIDEO_PRODUCER_TIMESTAMP=str(producer),
            )
            + _id(0x1F43B675) + UNKNOWN + uint(0xE7, cluster_ms) + blocks
        )  # fmt: skip
        header = ebml + _id(0x18538067) + UNKNOWN + info + tracks
        trailer = tags(AWS_KINESISVIDEO_MILLIS_BEHIND_NOW="0", AWS_KINESISVIDEO_CONTINUATION_TOKEN=number)
        captures = [int(producer * 1_000_000) + k * frame_ms * 1000 for k in range(FRAMES_PER_FRAGMENT)]
        out.append(KvsFragment(number, producer, captures, header + media + trailer, header, media))
    return out


# --- a GetMedia server ----------------------------------------------------------------------------


@dataclass
class MediaServer:
    """Serves GetMedia for one stream; cuts the connection of the first request at ``cut_at`` bytes."""

    stream_name: str
    fragments: list[KvsFragment]
    cut_at: int | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    authorized: list[bool] = field(default_factory=list)
    url: str = ""

    def start(self) -> ThreadingHTTPServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append(body)
                owner.authorized.append(self.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256"))
                if self.path != "/getMedia" or body.get("StreamName") != owner.stream_name:
                    error = json.dumps({"message": "Stream not found"}).encode()
                    self.send_response(404)
                    self.send_header("x-amzn-ErrorType", "ResourceNotFoundException")
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(error)))
                    self.end_headers()
                    self.wfile.write(error)
                    return
                payload = b"".join(
                    f.data for f in owner.fragments[owner.first_index(body["StartSelector"]) :]
                )
                cut = owner.cut_at if len(owner.requests) == 1 else None
                self.send_response(200)
                self.send_header("Content-Type", "video/webm")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                sent = payload[:cut] if cut is not None else payload
                for i in range(0, len(sent), 4096):
                    piece = sent[i : i + 4096]
                    self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                self.wfile.flush()
                if cut is not None:
                    # The network drops mid-fragment: no last chunk, the socket just goes away.
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(b"0\r\n\r\n")

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def first_index(self, selector: dict[str, Any]) -> int:
        numbers = [f.number for f in self.fragments]
        kind = selector["StartSelectorType"]
        if kind == "EARLIEST":
            return 0
        if kind == "AFTER_FRAGMENT_NUMBER":
            return numbers.index(selector["AfterFragmentNumber"]) + 1
        if kind == "FRAGMENT_NUMBER":
            return numbers.index(selector["AfterFragmentNumber"])
        raise AssertionError(f"unexpected selector {selector}")


@pytest.fixture(scope="module")
def fragments() -> list[KvsFragment]:
    return kvs_fragments()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def kvs(
    fragments: list[KvsFragment], aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, MediaServer, list[str]]]:
    """moto's Kinesis Video control plane (a real HTTP server) with one stream whose GET_MEDIA data
    endpoint is our media server. Yields (control-plane URL, media server, API names asked for)."""
    from moto.kinesisvideo import models as kvs_models
    from moto.server import ThreadedMotoServer

    name = f"platform-cam-{uuid.uuid4().hex[:6]}"
    third = sum(len(f.data) for f in fragments[:2]) + len(fragments[2].data) // 2
    media = MediaServer(name, fragments, cut_at=third)
    http = media.start()
    asked: list[str] = []

    def data_endpoint(stream: Any, api_name: str) -> str:
        asked.append(api_name)
        return media.url

    monkeypatch.setattr(kvs_models.Stream, "get_data_endpoint", data_endpoint)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    moto.start()
    control = f"http://127.0.0.1:{moto._port}"
    client = boto3.client("kinesisvideo", endpoint_url=control, region_name=REGION)
    arn = client.create_stream(StreamName=name, DataRetentionInHours=24, MediaType="video/h264")["StreamARN"]
    described = client.describe_stream(StreamName=name)["StreamInfo"]
    assert described["Status"] == "ACTIVE" and described["StreamARN"] == arn
    try:
        yield control, media, asked
    finally:
        moto.stop()
        http.shutdown()


# --- tests ----------------------------------------------------------------------------------------


def test_resumes_after_last_fragment_without_duplicates_or_loss(
    kvs: tuple[str, MediaServer, list[str]], fragments: list[KvsFragment]
) -> None:
    control, media, asked = kvs
    source = KinesisVideoSource(
        media.stream_name,
        region=REGION,
        endpoint_url=control,
        start=StartSelector.parse("earliest"),
        follow=False,
        backoff_s=(0.01, 0.05),
    )
    got = list(source.frames())

    expected = [us for f in fragments for us in f.frame_capture_us]
    assert [g.capture_us for g in got] == expected  # every frame once, in order, on the producer's clock
    for i, g in enumerate(got):
        y = g.frame.to_ndarray()[:HEIGHT].astype(float)  # the Y plane of the yuv420p frame
        rgb_level = (y.mean() - 16) * 255 / 219
        assert abs(rgb_level - luma(i)) < 3, f"frame {i} decoded as level {rgb_level:.1f}, not {luma(i)}"
        assert (g.frame.width, g.frame.height, g.frame.format.name) == (WIDTH, HEIGHT, "yuv420p")
    assert [g.fragment_number for g in got[::FRAMES_PER_FRAGMENT]] == [f.number for f in fragments]

    # Control plane asked for the GET_MEDIA endpoint (twice: again after the drop); requests were signed.
    assert asked == ["GET_MEDIA", "GET_MEDIA"] and all(media.authorized)
    assert media.requests[0]["StartSelector"] == {"StartSelectorType": "EARLIEST"}
    assert media.requests[1]["StartSelector"] == {
        "StartSelectorType": "AFTER_FRAGMENT_NUMBER",
        "AfterFragmentNumber": fragments[1].number,  # the last fragment fully received before the cut
    }
    assert len(media.requests) == 2 and source.last_fragment == fragments[-1].number
    assert source.duplicates_dropped > 0  # the cut fragment came twice; its first frames left once
    assert source.fps is None  # the stream sets no DefaultDuration: the chunker falls back to --fps


def test_cli_publishes_chunks_through_the_shared_sink(
    kvs: tuple[str, MediaServer, list[str]],
    fragments: list[KvsFragment],
    aws_env: dict[str, str],
    broker: TansuBroker,
    tmp_path: Path,
) -> None:
    control, media, _ = kvs
    camera = f"kvs-{uuid.uuid4().hex[:6]}/platform-1/front"
    run = subprocess.run(
        [
            sys.executable, "-m", "meetvar.cli", "kinesis", "--stream", media.stream_name,
            "--camera", camera, "--broker", broker.bootstrap, "--store", str(tmp_path / "objects"),
            "--endpoint-url", control, "--region", REGION, "--start", "earliest", "--once", "--fps", str(FPS),
        ],
        env={**os.environ, **aws_env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(media.requests) == 2  # cut once, resumed once

    chunks = asyncio.run(_read_stream(broker.bootstrap, camera))
    metas = [m for m, _ in chunks]
    assert metas[-1].end_of_stream and not any(m.end_of_stream for m in metas[:-1])
    captures = [us for m in metas for us in m.capture_us]
    assert captures == [us for f in fragments for us in f.frame_capture_us]
    assert {m.stream_start_us for m in metas} == {fragments[0].frame_capture_us[0]}
    assert [m.seq for m in metas] == list(range(len(metas)))
    for meta, data in chunks[:-1]:  # each chunk decodes standalone to its frames, in order
        frames = decode_chunk(data, len(meta.capture_us))
        first = (meta.capture_us[0] - fragments[0].frame_capture_us[0]) // (1_000_000 // FPS)
        levels = [float(f.mean()) for f in frames]
        assert all(abs(level - luma(first + k)) < 3 for k, level in enumerate(levels)), levels


async def _read_stream(bootstrap: str, camera: str) -> list[tuple[ChunkMeta, bytes]]:
    consumer = make_consumer(bootstrap, None, VIDEO_CHUNKS)
    await consumer.start()
    out: list[tuple[ChunkMeta, bytes]] = []
    try:
        async with asyncio.timeout(20):
            while not (out and out[-1][0].end_of_stream):
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    out += [unpack_chunk(r.value) for r in records if r.key == camera.encode()]
    finally:
        await consumer.stop()
    return out


def test_unknown_stream_is_a_one_line_error(kvs: tuple[str, MediaServer, list[str]]) -> None:
    control, _, _ = kvs
    source = KinesisVideoSource("no-such-stream", region=REGION, endpoint_url=control, follow=False)
    with pytest.raises(SourceError, match="no such Kinesis Video stream"):
        next(source.frames())


def test_error_tags_and_garbage_are_reported(fragments: list[KvsFragment]) -> None:
    from ingest.kinesis import FragmentDecoder
    from ingest.sources.file import FrameNormalizer

    error = fragments[0].data + el(0x1A45DFA3, b"") + tags(AWS_KINESISVIDEO_ERROR_CODE="4000")
    decoder = FragmentDecoder("t", FrameNormalizer("t"))
    with pytest.raises(KvsError, match="4000"):
        list(decoder.feed(io.BytesIO(error)))
    assert decoder.done_fragments == [fragments[0].number]
    with pytest.raises(MkvError):
        list(read_elements(io.BytesIO(b"\x00\x00garbage")))
    with pytest.raises(ConnectionError):  # cut inside an element: a disconnect, not the end
        list(read_elements(io.BytesIO(fragments[0].data[:-7])))


def test_fragments_within_one_document_are_told_apart_by_their_numbers(fragments: list[KvsFragment]) -> None:
    """Not every producer starts a new MKV document per fragment: a new fragment number closes the last."""
    from ingest.kinesis import FragmentDecoder
    from ingest.sources.file import FrameNormalizer

    one_document = fragments[0].header + b"".join(f.media for f in fragments)
    decoder = FragmentDecoder("t", FrameNormalizer("t"))
    got = list(decoder.feed(io.BytesIO(one_document)))
    assert [g.capture_us for g in got] == [us for f in fragments for us in f.frame_capture_us]
    assert decoder.done_fragments == [f.number for f in fragments]


def test_start_selector_parsing() -> None:
    assert StartSelector.parse("now").to_api() == {"StartSelectorType": "NOW"}
    assert StartSelector.parse("after:123").to_api() == {
        "StartSelectorType": "AFTER_FRAGMENT_NUMBER",
        "AfterFragmentNumber": "123",
    }
    assert StartSelector.parse("producer:1767225600.5").to_api()["StartTimestamp"] == Decimal("1767225600.5")
    with pytest.raises(ValueError, match="must be now"):
        StartSelector.parse("yesterday")
