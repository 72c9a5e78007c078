"""Drive a real ``meetvar demo`` from a benchmark or a test: start it, find its services, watch its streams.

:class:`DemoProcess` starts ``python -m meetvar.cli demo`` in a data directory, reads the broker's
address from what the demo prints and each service's pid and restart count from ``DATA/supervisor.json``
(the supervisor writes it on every change). :class:`StreamWatch` follows ``video.chunks`` and ``poses``
on the demo's broker from a thread of its own, so a caller knows where in the clip each camera's source
and its consumers are (media time: capture time minus the stream's start), which is how a kill is aimed
"mid-attempt". It reconnects by itself when the broker is killed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from meetvar.supervisor import read_status
from stream_processors.tansu import free_port

__all__ = ["DemoProcess", "Position", "StreamWatch", "free_port", "judge_clip", "wait_for"]


def wait_for(what: str, check: Callable[[], Any], timeout: float, step: float = 0.2) -> Any:
    """``check()``'s first truthy result, polled every ``step`` s; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if result := check():
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(step)


def judge_clip(video: Path) -> dict[str, Any]:
    """``meetvar judge VIDEO --json`` in a child process (as a user runs it): the reference calls."""
    out = subprocess.run(
        [sys.executable, "-m", "meetvar.cli", "judge", str(video), "--json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


class DemoProcess:
    """A running ``meetvar demo`` (durable broker unless ``--memory`` is in ``extra``).

    Use as a context manager; on exit it is stopped with SIGINT (as Ctrl-C), then killed if it hangs.
    """

    def __init__(self, data_dir: Path, extra: Sequence[str] = (), port: int | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.extra = list(extra)
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None
        self.bootstrap = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def output_path(self) -> Path:
        return self.data_dir / "demo.out"

    def output(self) -> str:
        with contextlib.suppress(OSError):
            return self.output_path.read_text(errors="replace")
        return ""

    def start(self, timeout: float = 90.0) -> DemoProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._out = self.output_path.open("wb")
        argv = [sys.executable, "-m", "meetvar.cli", "demo", "--port", str(self.port)]
        argv += ["--data-dir", str(self.data_dir), *self.extra]
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.STDOUT)

        def running() -> str | None:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"meetvar demo exited with {self.proc.returncode}:\n{self.output()}")
            found = re.search(r"Tansu \(Kafka protocol\) at (\S+),", self.output())
            return found.group(1) if found else None

        self.bootstrap = wait_for("meetvar demo to print that it is running", running, timeout)
        return self

    def status(self) -> dict[str, Any]:
        """``DATA/supervisor.json``'s services: name → state, pid, restarts, last exit."""
        status = read_status(self.data_dir / "supervisor.json") or {}
        services: dict[str, Any] = status.get("services", {})
        return services

    def pid(self, service: str) -> int | None:
        info = self.status().get(service) or {}
        pid = info.get("pid")
        return int(pid) if isinstance(pid, int) and info.get("state") == "running" else None

    def restarts(self) -> dict[str, int]:
        return {name: int(info.get("restarts") or 0) for name, info in self.status().items()}

    def kill9(self, service: str, timeout: float = 120.0) -> dict[str, Any]:
        """SIGKILL ``service``'s process and wait until the supervisor has it running again.

        Returns what happened: the old and new pid and the seconds until it was running again."""
        old = wait_for(f"{service} running", lambda: self.pid(service), timeout)
        before = self.restarts().get(service, 0)
        killed_at = time.monotonic()
        os.kill(old, signal.SIGKILL)

        def back() -> int | None:
            self.check_alive()
            pid = self.pid(service)
            return pid if pid and pid != old and self.restarts().get(service, 0) > before else None

        new = wait_for(f"{service} restarted by the supervisor", back, timeout)
        return {
            "service": service,
            "old_pid": old,
            "new_pid": new,
            "back_after_s": round(time.monotonic() - killed_at, 2),
        }

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"meetvar demo exited with {self.proc.returncode}:\n{self.output()[-4000:]}")

    def attempts(self) -> list[dict[str, Any]]:
        """``GET /api/attempts`` (as an anonymous viewer, which the demo allows on loopback)."""
        import httpx

        response = httpx.get(f"{self.url}/api/attempts", params={"limit": 1000}, timeout=10)
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()
        return items

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._out is not None:
            self._out.close()
            self._out = None
        return self.proc.returncode

    def __enter__(self) -> DemoProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Position:
    """Where one camera's stream is: its start, and the media time (s) of the newest frame seen."""

    stream_start_us: int
    media_s: float
    ended: bool = False
    at: float = field(default_factory=time.monotonic)  # when it was seen (monotonic)


class StreamWatch:
    """Follows ``video.chunks`` (what ingest has sent) and ``poses`` (what the pose worker has made,
    which the referee reads at once) on a thread; per camera key the newest :class:`Position` and
    every stream start seen."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.chunks: dict[str, Position] = {}
        self.poses: dict[str, Position] = {}
        self.streams: dict[str, set[int]] = {}
        # Per camera, when each chunk was first seen on the topic: (stream start, media end, monotonic).
        self._sent: dict[str, collections.deque[tuple[int, float, float]]] = {}
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stream-watch", daemon=True)
        self._lock = threading.Lock()

    def __enter__(self) -> StreamWatch:
        # Its client reconnects by itself while the broker is down: no line per failed try on stderr.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
        logging.getLogger("httpx").setLevel(logging.WARNING)  # no line per request polled
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def pose(self, camera: str) -> Position | None:
        with self._lock:
            return self.poses.get(camera)

    def chunk(self, camera: str) -> Position | None:
        with self._lock:
            return self.chunks.get(camera)

    def pose_lag_s(self, camera: str) -> float | None:
        """Consumer lag in seconds: now minus when the source sent the chunk of the newest pose's
        frame (independent of the playback speed); None until both are seen."""
        with self._lock:
            pose = self.poses.get(camera)
            sent = self._sent.get(camera)
            if pose is None or not sent:
                return None
            for start, media_end, seen in sent:
                if start == pose.stream_start_us and media_end >= pose.media_s - 1e-6:
                    return time.monotonic() - seen
        return None

    def _run(self) -> None:
        asyncio.run(self._follow())

    async def _follow(self) -> None:
        from aiokafka import TopicPartition

        from stream_processors.kafka import make_consumer
        from stream_processors.schemas import PoseMsg, SchemaError, unpack_chunk
        from stream_processors.topics import POSES, VIDEO_CHUNKS

        positions: dict[Any, int] = {}
        while not self._stop.is_set():
            consumer = make_consumer(self.bootstrap, None, request_timeout_ms=5000)
            try:
                await consumer.start()
                cluster = await consumer._client.fetch_all_metadata()
                tps = [
                    TopicPartition(topic, p)
                    for topic in (VIDEO_CHUNKS, POSES)
                    for p in sorted(cluster.partitions_for_topic(topic) or ())
                ]
                consumer.assign(tps)
                for tp in tps:
                    consumer.seek(tp, positions.get(tp, 0))
                while not self._stop.is_set():
                    batch = await consumer.getmany(timeout_ms=200)
                    for tp, records in batch.items():
                        for record in records:
                            positions[tp] = record.offset + 1
                            key = (record.key or b"").decode(errors="replace")
                            try:
                                if tp.topic == POSES:
                                    msg = PoseMsg.parse(record.value or b"")
                                    capture = (msg.frame or {}).get("capture_us", -1)
                                    self._note(
                                        self.poses, key, msg.stream_start_us, capture, msg.end_of_stream
                                    )
                                else:
                                    meta, _ = unpack_chunk(record.value or b"")
                                    last = meta.capture_us[-1] if meta.capture_us else -1
                                    self._note(
                                        self.chunks, key, meta.stream_start_us, last, meta.end_of_stream
                                    )
                                    if last >= 0:
                                        self._sent_chunk(key, meta.stream_start_us, last)
                            except SchemaError:
                                continue
            except Exception:  # the broker was killed: connect again where we were
                self.errors += 1
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()

    def _sent_chunk(self, key: str, start: int, last_capture_us: int) -> None:
        with self._lock:
            sent = self._sent.setdefault(key, collections.deque(maxlen=4000))
            sent.append((start, (last_capture_us - start) / 1e6, time.monotonic()))

    def _note(self, into: dict[str, Position], key: str, start: int, capture: Any, ended: bool) -> None:
        with self._lock:
            self.streams.setdefault(key, set()).add(start)
            now = into.get(key)
            if isinstance(capture, int) and capture >= 0:
                media = (capture - start) / 1e6
                if now is None or now.stream_start_us != start or media >= now.media_s:
                    into[key] = Position(start, media)
            elif ended and now is not None and now.stream_start_us == start:
                now.ended = True
