"""``meetvar demo``: the embedded default, every part started on loopback and stopped together.

The services run as child processes, as they would in production, so a crash in one shows up as that
service failing, not as a hung demo. Each child dies with the demo even if the demo itself is killed
(PR_SET_PDEATHSIG), and Ctrl-C stops them in order and waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

from meetvar.errors import UserError
from stream_processors.kafka import ensure_topics
from stream_processors.tansu import TansuBroker
from stream_processors.topics import ALL_TOPICS

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            raise UserError(
                f"port {port} on {host} is in use — stop what is using it or pass --port N"
            ) from None


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes] = field(repr=False)

    def tail(self, lines: int = 8) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


@dataclass
class Demo:
    video: Path
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path | None = None
    loop: bool = True
    speed: float = 1.0
    camera: str = "demo/platform-1/side"
    children: list[Child] = field(default_factory=list)

    def run(self) -> int:
        check_port_free(self.host, self.port)
        data = self.data_dir or Path(tempfile.mkdtemp(prefix="meetvar-demo-"))
        logs = data / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        previous = signal.signal(signal.SIGTERM, _raise_stop)
        broker = TansuBroker(logs)
        try:
            broker.start()
            asyncio.run(ensure_topics(broker.bootstrap, ALL_TOPICS))
            b = broker.bootstrap
            store = str(data / "objects")
            # No default password: a one-time organizer login link, handed to the dashboard in its
            # environment (not its argv, which any local user can read) and printed below.
            login_token = secrets.token_urlsafe(24)
            self._spawn(
                "dashboard",
                [
                    "dashboard",
                    "--broker",
                    b,
                    "--host",
                    self.host,
                    "--port",
                    str(self.port),
                    "--db",
                    str(data / "meetvar.sqlite"),
                    "--store",
                    store,
                    "--anonymous-viewer",
                ],
                logs,
                env={
                    "MEETVAR_LOGIN_TOKEN": login_token,
                    "MEETVAR_WHIP_TOKENS": str(data / "whip-tokens.json"),
                },
            )
            self._spawn("pose", ["pose-worker", "--broker", b, "--store", store], logs)
            self._spawn("referee", ["referee", "--broker", b, "--data-dir", str(data / "referee")], logs)
            # Every chunk and decision kept in the object store: replays and audits read from there.
            self._spawn("archiver", ["archiver", "--broker", b, "--store", store], logs)
            ingest = [
                "ingest",
                str(self.video),
                "--broker",
                b,
                "--camera",
                self.camera,
                "--store",
                store,
                "--speed",
                str(self.speed),
            ]
            self._spawn("ingest", [*ingest, "--loop"] if self.loop else ingest, logs)
            url = f"http://{self.host}:{self.port}"
            print(
                f"meetvar demo is running\n"
                f"  dashboard   {url}   (live calls over {url.replace('http', 'ws')}/ws,"
                f" JSON at {url}/api/attempts)\n"
                f"  sign in     {url}/#login={login_token}   (one-time organizer login, valid 1 h;"
                f" without it the page is read-only)\n"
                f"  broker      Tansu (Kafka protocol) at {b}, in memory\n"
                f"  services    ingest ({self.video.name}, {'looping' if self.loop else 'once'}), "
                f"pose worker (BlazePose, ONNX Runtime CPU), referee (faust), archiver\n"
                f"  cameras     WHIP at {url}/whip/<meet~platform~camera> (tokens: meetvar whip-token …"
                f" --tokens {data / 'whip-tokens.json'}), phone page {url}/whip/publish\n"
                f"  data, logs  {data}\n"
                f"Press Ctrl-C to stop everything.",
                flush=True,
            )
            return self._watch()
        except (_Stop, KeyboardInterrupt):
            print("\nstopping…", flush=True)
            return 0
        finally:
            self._stop_children()
            broker.stop()
            signal.signal(signal.SIGTERM, previous)

    def _spawn(self, name: str, args: list[str], logs: Path, env: dict[str, str] | None = None) -> None:
        log_path = logs / f"{name}.log"
        log_file = log_path.open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "meetvar.cli", *args],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env} if env else None,
            start_new_session=True,  # Ctrl-C reaches the demo only; it stops the children in order
            preexec_fn=_die_with_parent,
        )
        self.children.append(Child(name, proc, log_path, log_file))

    def _watch(self) -> int:
        while True:
            for child in self.children:
                code = child.proc.poll()
                if code is None:
                    continue
                if child.name == "ingest" and code == 0:
                    print("demo: the clip has been streamed once; the dashboard stays up. Ctrl-C to stop.")
                    self.children.remove(child)
                    break
                print(
                    f"meetvar: the {child.name} service stopped (exit {code}); its last log lines:\n"
                    f"{child.tail()}\nsee {child.log_path}",
                    file=sys.stderr,
                )
                return 1
            time.sleep(0.3)

    def _stop_children(self) -> None:
        # Stop the source first so nothing new enters, then the consumers, then the dashboard.
        order = {"ingest": 0, "pose": 1, "referee": 2, "archiver": 3, "dashboard": 4}
        for child in sorted(self.children, key=lambda c: order.get(c.name, 9)):
            if child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 8
        for child in self.children:
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.kill()
                child.proc.wait()
            child.log_file.close()
        self.children.clear()
