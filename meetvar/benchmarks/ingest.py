"""``meetvar bench ingest``: how many 720p30 WHIP cameras one core sustains, and capture→Kafka latency.

The true end-to-end latency needs the moment a frame was *made*, which only the camera knows, so the
synthetic camera (:class:`BarcodeTrack`) draws it into the picture: a 64-bit barcode holding the frame
counter (24 bits) and the wall clock at capture (40 low bits of µs). A consumer decodes the chunks from
Kafka, reads the barcodes and subtracts. Everything runs on loopback on this machine, so the clocks are
the same clock.

Layout: the WHIP server (uvicorn + aiortc + x264 + Kafka producer) runs in this process, whose CPU time
is what "per camera" means; each camera and the latency consumer are child processes, so their CPU
(the VP8/H.264 encoding a real camera does in hardware) is not counted against ingest.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from meetvar.benchmarks.pipeline import cpu_s
from stream_processors.tansu import free_port

BITS_COUNTER = 24
BITS_TIME = 40
_COLS, _ROWS = 16, 4  # 64 blocks
_TIME_MASK = (1 << BITS_TIME) - 1


def _block(width: int) -> int:
    return max(8, width // 32)


def draw_barcode(yuv: npt.NDArray[np.uint8], width: int, height: int, counter: int, time_us: int) -> None:
    """Write the code into the top-left of a yuv420p frame laid out as ``(height * 3 // 2, width)``."""
    value = (counter & ((1 << BITS_COUNTER) - 1)) << BITS_TIME | (time_us & _TIME_MASK)
    b = _block(width)
    for i in range(_COLS * _ROWS):
        r, c = divmod(i, _COLS)
        bit = (value >> (63 - i)) & 1
        yuv[r * b : (r + 1) * b, c * b : (c + 1) * b] = 235 if bit else 16
    # Neutral chroma under the code, so it reads the same in RGB.
    uv_rows, b2 = height // 4, b // 2
    for plane_row in (height, height + uv_rows):
        for r in range(_ROWS):
            rows = slice(plane_row + (r * b2) // 2, plane_row + ((r + 1) * b2 + 1) // 2)
            yuv[rows, : _COLS * b] = 128


def read_barcode(image: npt.NDArray[np.uint8]) -> tuple[int, int]:
    """``(counter, time_us & (2**40 - 1))`` from a decoded frame (rgb24, or its luma plane) carrying
    :func:`draw_barcode`."""
    b = _block(image.shape[1])
    value = 0
    grey = image.mean(axis=2) if image.ndim == 3 else image.astype(np.float32)
    for i in range(_COLS * _ROWS):
        r, c = divmod(i, _COLS)
        q = b // 4
        cell = grey[r * b + q : (r + 1) * b - q, c * b + q : (c + 1) * b - q]
        value = value << 1 | int(cell.mean() > 128)
    return value >> BITS_TIME, value & _TIME_MASK


def last_luma(chunk: bytes) -> npt.NDArray[np.uint8]:
    """The luma plane of a chunk's last frame: all a barcode reader needs, without converting to RGB."""
    last = None
    with av.open(io.BytesIO(chunk), "r", format="mpegts") as container:
        for frame in container.decode(video=0):
            last = frame
    assert last is not None, "empty chunk"
    plane = last.planes[0]
    rows = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
    return rows[: last.height, : last.width]


def clip_frames(path: Path, width: int, height: int, count: int) -> list[npt.NDArray[np.uint8]]:
    """``count`` frames of a real clip scaled to the camera size, as yuv420p arrays (realistic content)."""
    out: list[npt.NDArray[np.uint8]] = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yuv = frame.reformat(width=width, height=height, format="yuv420p").to_ndarray()
            out.append(np.asarray(yuv, np.uint8))
            if len(out) == count:
                break
    return out + out[-2:0:-1]  # ping-pong: no jump when it loops


class BarcodeTrack(MediaStreamTrack):
    """A camera: ``frames`` frames at ``fps`` (then it ends), each carrying its counter and capture time.

    ``sent_us[k]`` is the capture time of frame ``k``; ``done`` is set once the last one is handed over.
    With ``encoded=True`` it hands aiortc H.264 packets it encoded itself, as OBS would send them
    (x264 ``ultrafast``, keyframe every second, no B-frames, ~4 Mbit/s): a camera's encoder is its own
    hardware, so a benchmark on a small machine must not spend the ingest's cores on it.
    """

    kind = "video"

    def __init__(
        self,
        width: int = 320,
        height: int = 240,
        fps: int = 30,
        frames: int | None = None,
        background: list[npt.NDArray[np.uint8]] | None = None,
        encoded: bool = False,
    ) -> None:
        super().__init__()
        self.width, self.height, self.fps, self.frames = width, height, fps, frames
        self.background = background
        self._encoder: Any = None
        if encoded:
            self._encoder = av.CodecContext.create("libx264", "w")
            self._encoder.width, self._encoder.height, self._encoder.pix_fmt = width, height, "yuv420p"
            self._encoder.time_base = Fraction(1, 90_000)
            self._encoder.framerate = Fraction(fps)
            self._encoder.bit_rate = 4_000_000
            self._encoder.thread_count = 1
            self._encoder.profile = "Baseline"
            self._encoder.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(fps), "bf": "0"}
        self.sent_us: list[int] = []
        self.done = asyncio.Event()
        self._t0: float | None = None

    async def recv(self) -> av.VideoFrame | av.Packet:
        k = len(self.sent_us)
        if self.frames is not None and k >= self.frames:
            self.done.set()
            raise MediaStreamError
        if self._t0 is None:
            self._t0 = time.monotonic()
        delay = self._t0 + k / self.fps - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if self.background:
            yuv = self.background[k % len(self.background)].copy()
        else:
            yuv = np.full((self.height * 3 // 2, self.width), 128, np.uint8)
            yuv[: self.height] = 60 + (k * 3) % 120  # some change per frame
        now = time.time_ns() // 1000
        draw_barcode(yuv, self.width, self.height, k, now)
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = round(k * 90_000 / self.fps)
        frame.time_base = Fraction(1, 90_000)
        self.sent_us.append(now)
        if self._encoder is None:
            return frame
        packets = self._encoder.encode(frame)  # zerolatency: one packet per frame, at once
        assert len(packets) == 1, f"x264 gave {len(packets)} packets for one frame"
        packet: av.Packet = packets[0]
        packet.pts, packet.time_base = frame.pts, frame.time_base
        return packet


# -- a camera process ------------------------------------------------------------------------------
def prefer_codec(pc: Any, codec: str) -> None:
    """Make the offer carry only ``codec`` (``h264`` like OBS, or ``vp8`` like many browsers)."""
    from aiortc import RTCRtpSender

    caps = RTCRtpSender.getCapabilities("video").codecs
    wanted = [c for c in caps if c.mimeType.lower() in (f"video/{codec}", "video/rtx")]
    for transceiver in pc.getTransceivers():
        if transceiver.kind == "video":
            transceiver.setCodecPreferences(wanted)


async def run_client(
    endpoint: str,
    token: str,
    *,
    width: int,
    height: int,
    fps: int,
    frames: int | None,
    codec: str,
    clip: Path | None = None,
    encoded: bool = False,
) -> None:
    """Publish a :class:`BarcodeTrack` over WHIP; prints JSON lines (``published``, ``done``)."""
    from aiortc import RTCPeerConnection

    from ingest.whip import WhipClient

    background = clip_frames(clip, width, height, 45) if clip else None
    pc = RTCPeerConnection()
    track = BarcodeTrack(width, height, fps, frames, background, encoded=encoded)
    pc.addTrack(track)
    prefer_codec(pc, codec)
    client = WhipClient(endpoint, token, pc)
    location = await client.publish()
    print(json.dumps({"event": "published", "location": location}), flush=True)
    await track.done.wait()
    await asyncio.sleep(0.3)  # let the last packets land before hanging up
    status = await client.delete()
    print(json.dumps({"event": "done", "sent": len(track.sent_us), "delete": status}), flush=True)


def client_command(
    endpoint: str,
    token: str,
    *,
    size: tuple[int, int] = (320, 240),
    fps: int = 30,
    frames: int | None = None,
    codec: str = "h264",
    clip: Path | None = None,
    encoded: bool = False,
) -> list[str]:
    """The argv of a camera child process (see :func:`main`)."""
    argv = [sys.executable, "-m", "meetvar.benchmarks.ingest", "client", endpoint, token]
    argv += ["--size", f"{size[0]}x{size[1]}", "--fps", str(fps), "--codec", codec]
    if frames is not None:
        argv += ["--frames", str(frames)]
    if clip is not None:
        argv += ["--clip", str(clip)]
    if encoded:
        argv.append("--encoded")
    return argv


# -- the latency consumer --------------------------------------------------------------------------
async def consume_latency(
    bootstrap: str, prefix: str, seconds: float, samples: list[tuple[int, float]]
) -> None:
    """Appends ``(received_us, latency_ms)`` per chunk to ``samples`` (as it goes, so a SIGTERM can report
    them): for the chunk's last frame, receive time − the capture time in its barcode."""
    from stream_processors.kafka import make_consumer
    from stream_processors.schemas import unpack_chunk
    from stream_processors.topics import VIDEO_CHUNKS

    consumer = make_consumer(bootstrap, None, VIDEO_CHUNKS, fetch_max_wait_ms=10)
    await consumer.start()
    start = time.monotonic()
    try:
        while time.monotonic() - start < seconds:
            batch = await consumer.getmany(timeout_ms=100)
            received_us = time.time_ns() // 1000
            for records in batch.values():
                for record in records:
                    if not (record.key or b"").decode().startswith(prefix):
                        continue
                    meta, data = unpack_chunk(record.value)
                    if meta.end_of_stream or not data:
                        continue
                    _, sent = read_barcode(last_luma(data))
                    samples.append((received_us, (received_us - sent) % (1 << BITS_TIME) / 1000))
    finally:
        await consumer.stop()


def _percentiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"p50": None, "p99": None, "n": 0}
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered), 1),
        "p99": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1),
        "n": len(ordered),
    }


# -- the benchmark ---------------------------------------------------------------------------------
async def _bench(cameras: int, seconds: float, width: int, height: int, codec: str) -> dict[str, Any]:
    import uvicorn

    from ingest.whip import CameraTokens, WhipService, camera_path_id, whip_app
    from meetvar.cli import bundled_clip
    from stream_processors.object_store import LocalObjectStore
    from stream_processors.tansu import TansuBroker

    with tempfile.TemporaryDirectory(prefix="meetvar-bench-ingest-") as tmp, TansuBroker(Path(tmp)) as broker:
        work = Path(tmp)
        tokens = CameraTokens()
        keys = [f"bench/p1/cam{i}" for i in range(cameras)]
        secrets = {k: tokens.issue(k) for k in keys}
        service = WhipService(broker.bootstrap, LocalObjectStore(work / "objects"), tokens)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(whip_app(service), "127.0.0.1", port, log_level="warning"))
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        consumer = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "meetvar.benchmarks.ingest", "consume", broker.bootstrap, "bench/"],
            str(seconds + 30),
            stdout=subprocess.PIPE,
        )
        clients = [
            await asyncio.create_subprocess_exec(
                *client_command(
                    f"http://127.0.0.1:{port}/whip/{camera_path_id(k)}",
                    secrets[k],
                    size=(width, height),
                    frames=None,
                    codec=codec,
                    clip=bundled_clip(),
                    encoded=codec == "h264",
                ),
                stdout=subprocess.DEVNULL,
            )
            for k in keys
        ]

        def published() -> int:
            return sum(m["frames_out"] for m in service.metrics.snapshot().values())

        while published() < 60 * cameras:  # warm up: every camera connected, encoders running
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        load0 = os.getloadavg()[0]
        cpu0, wall0, us0, frames0 = cpu_s(), time.monotonic(), time.time_ns() // 1000, published()
        await asyncio.sleep(seconds)
        cpu, wall, us1 = cpu_s() - cpu0, time.monotonic() - wall0, time.time_ns() // 1000
        frames = published() - frames0
        metrics = service.metrics.snapshot()
        load1 = os.getloadavg()[0]
        for proc in clients:
            proc.terminate()
            await proc.wait()
        consumer.terminate()
        out, _ = await consumer.communicate()
        server.should_exit = True
        await serving
    samples = [lat for at, lat in json.loads(out.decode().strip().splitlines()[-1]) if us0 <= at <= us1]
    ms_per_frame = cpu * 1000 / frames if frames else float("inf")
    return {
        "cameras": cameras,
        "resolution": f"{width}x{height}",
        "fps": 30,
        "codec": codec,
        "seconds": round(wall, 1),
        "frames_published_per_s": round(frames / wall, 1),
        "ingest_cpu_ms_per_frame": round(ms_per_frame, 2),
        "ingest_cores_per_camera": round(ms_per_frame * 30 / 1000, 3),
        "cameras_per_core": round(1000 / (ms_per_frame * 30), 2),
        "capture_to_kafka_ms": _percentiles(samples),
        "server_capture_to_ack_ms": {k: m["latency_ms"] for k, m in metrics.items()},
        "backpressure_events": sum(m["backpressure_events"] for m in metrics.values()),
        "machine_cores": os.cpu_count(),
        "load_average_1m": [round(load0, 2), round(load1, 2)],
    }


def run_bench_ingest(args: argparse.Namespace) -> dict[str, Any]:
    """``meetvar bench ingest``: ``args.cameras`` (list), ``args.seconds``, ``args.size``, ``args.codec``.

    Latency is camera capture (the barcode's clock) → a Kafka consumer holding the chunk, for the
    chunk's *last* frame: the part of the delay that ingest adds (its first frame also waited
    ``chunk_seconds`` for the chunk to fill, by design). CPU is this process's (the WHIP server's).
    """
    width, height = (int(v) for v in str(getattr(args, "size", "1280x720")).split("x"))
    runs = [
        asyncio.run(_bench(int(n), float(getattr(args, "seconds", 10.0)), width, height, args.codec))
        for n in getattr(args, "cameras", [1])
    ]
    best = max(runs, key=lambda r: r["cameras"])
    return {
        "runs": runs,
        "cameras_per_core": best["cameras_per_core"],
        "latency": best["capture_to_kafka_ms"],
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``meetvar bench ingest`` (for whoever wires the ``bench`` command)."""
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 2], help="camera counts to run")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--size", default="1280x720", help="camera resolution WxH")
    parser.add_argument("--codec", default="h264", choices=["h264", "vp8"])
    parser.add_argument("--json", action="store_true")


def main(argv: list[str] | None = None) -> int:
    """Child processes of the bench and the tests: ``client`` (a camera), ``consume`` (latency)."""
    p = argparse.ArgumentParser(prog="python -m meetvar.benchmarks.ingest")
    sub = p.add_subparsers(dest="role", required=True)
    c = sub.add_parser("client")
    c.add_argument("endpoint")
    c.add_argument("token")
    c.add_argument("--size", default="320x240")
    c.add_argument("--fps", type=int, default=30)
    c.add_argument("--frames", type=int, default=None)
    c.add_argument("--codec", default="h264")
    c.add_argument("--clip", type=Path, default=None)
    c.add_argument("--encoded", action="store_true", help="send H.264 encoded here (x264 ultrafast)")
    k = sub.add_parser("consume")
    k.add_argument("bootstrap")
    k.add_argument("prefix")
    k.add_argument("seconds", type=float)
    b = sub.add_parser("bench")
    add_arguments(b)
    args = p.parse_args(argv)
    if args.role == "client":
        w, h = (int(v) for v in args.size.split("x"))
        asyncio.run(
            run_client(
                args.endpoint,
                args.token,
                width=w,
                height=h,
                fps=args.fps,
                frames=args.frames,
                codec=args.codec,
                clip=args.clip,
                encoded=args.encoded,
            )
        )
    elif args.role == "consume":
        samples: list[tuple[int, float]] = []

        def report(*_: Any) -> None:
            print(json.dumps(samples), flush=True)
            sys.exit(0)

        signal.signal(signal.SIGTERM, report)
        asyncio.run(consume_latency(args.bootstrap, args.prefix, args.seconds, samples))
        report()
    else:
        print(json.dumps(run_bench_ingest(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
