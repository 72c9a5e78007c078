"""``meetvar demo``: the embedded default, every part started on loopback and supervised.

The parts run as child processes, as they would in production, under :class:`meetvar.supervisor.Supervisor`:
a child that crashes is started again with exponential backoff (logged and counted; the counts are in
``DATA/supervisor.json`` and in the dashboard's ``GET /api/health``), only Ctrl-C or SIGTERM stops
everything (in order: the source, the consumers, the dashboard, then the broker and its store), and every
child dies with the demo even if the demo itself is killed with SIGKILL (``PR_SET_PDEATHSIG``).

The broker is durable by default: Tansu keeps its log on SeaweedFS (``weed mini``, S3 on loopback) in
``DATA/s3`` (credentials in ``DATA/s3/s3.json``, kept for the next start on the same ``--data-dir``), so a
broker restart loses nothing. ``--memory`` keeps the broker in memory (nothing survives a broker restart).

With ``--liftingcast URL`` the demo also follows a LiftingCast live feed (``meetvar liftingcast``, one
more supervised service): the mapped LiftingCast platform's current attempt names the demo camera's lifts
and the referees' lights become their official result. A refused connection (bad meet id or password)
leaves that service ``failed`` with its reason, not retried all day; a dropped one reconnects.

To add a service (e.g. an explainer), add one entry to :meth:`Demo.services`.
"""

from __future__ import annotations

import asyncio
import functools
import re
import secrets
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen
from types import FrameType

from meetvar.errors import UserError
from meetvar.supervisor import STATUS_ENV, Service, ServiceStartError, Supervisor, meetvar_service
from stream_processors.kafka import ensure_topics
from stream_processors.seaweed import (
    DEFAULT_REGION,
    SeaweedS3,
    WeedPorts,
    s3_credentials,
    wait_s3_ready,
    weed_command,
)
from stream_processors.tansu import find_tansu_binary, free_port, kafka_api_versions_ok, tansu_command
from stream_processors.topics import ALL_TOPICS

BROKER_BUCKET = "tansu"
# Stop tiers: the source first so nothing new enters, then the consumers, the dashboard, and last the
# broker and the store it writes to.
STOP_SOURCE, STOP_CONSUMERS, STOP_DASHBOARD, STOP_BROKER, STOP_STORE = 0, 10, 20, 90, 100


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


def _wait_broker_ready(
    host: str, port: int, log_path: Path, timeout: float = 15.0
) -> Callable[[Popen[bytes]], None]:
    def ready(proc: Popen[bytes]) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"Tansu exited with {proc.returncode}")
            if kafka_api_versions_ok(host, port, timeout=0.25):
                return
            if "AddrInUse" in _tail(log_path):
                raise RuntimeError(f"Tansu could not bind {host}:{port}: address already in use")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Tansu did not answer on {host}:{port} within {timeout:.0f} s")
            time.sleep(0.02)

    return ready


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - chars))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


@dataclass(frozen=True)
class LiftingCastLink:
    """Where the demo's meet software is: a LiftingCast feed and which of its platforms is ours."""

    url: str
    meet_id: str
    password: str
    platform: str  # LiftingCast's platform id, mapped to the demo camera's platform
    api_key: str | None = None


@dataclass
class Demo:
    video: Path
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path | None = None
    loop: bool = True
    speed: float = 1.0
    camera: str = "demo/platform-1/side"
    memory: bool = False
    cameras: int = 1
    liftingcast: LiftingCastLink | None = None

    def run(self) -> int:
        self.camera_ids()  # a bad --cameras is an error before anything starts
        check_port_free(self.host, self.port)
        data = self.data_dir or Path(tempfile.mkdtemp(prefix="meetvar-demo-"))
        logs = data / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        previous = signal.signal(signal.SIGTERM, _raise_stop)
        # Ctrl-C stops everything even where SIGINT came in ignored, as a shell's background job
        # (`meetvar demo &` in a script) has it; Python then installs no handler of its own.
        previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
        supervisor = Supervisor(logs, data / "supervisor.json", on_exit=self._report_exit)
        try:
            bootstrap, where = self._start_broker(supervisor, data, logs)
            asyncio.run(ensure_topics(bootstrap, ALL_TOPICS))
            # No default password: a one-time organizer login link, handed to the dashboard in its
            # environment (not its argv, which any local user can read) and printed below.
            login_token = secrets.token_urlsafe(24)
            for service in self.services(bootstrap, data, login_token):
                supervisor.start(service)
            url = f"http://{self.host}:{self.port}"
            print(
                f"meetvar demo is running\n"
                f"  dashboard   {url}   (live calls over {url.replace('http', 'ws')}/ws,"
                f" JSON at {url}/api/attempts)\n"
                f"  sign in     {url}/#login={login_token}   (one-time organizer login, valid 1 h;"
                f" without it the page is read-only)\n"
                f"  broker      Tansu (Kafka protocol) at {bootstrap}, {where}\n"
                f"  services    ingest ({self.video.name}, {'looping' if self.loop else 'once'}"
                f"{'' if self.speed == 1 else f', speed {self.speed:g}'}"
                f", {len(self.camera_ids())} camera(s): {', '.join(self.camera_ids())}), "
                f"pose worker (BlazePose, ONNX Runtime CPU), referee (faust), archiver;"
                f" restarted when they crash ({data / 'supervisor.json'}, {url}/api/health)\n"
                f"  cameras     WHIP at {url}/whip/<meet~platform~camera> (tokens: meetvar whip-token …"
                f" --tokens {data / 'whip-tokens.json'}), phone page {url}/whip/publish\n"
                f"  meet        {self._meet_line(bootstrap)}\n"
                f"  data, logs  {data}\n"
                f"Press Ctrl-C to stop everything.",
                flush=True,
            )
            supervisor.run()
            return 0  # pragma: no cover - run() returns only by an exception
        except (_Stop, KeyboardInterrupt):
            print("\nstopping…", flush=True)
            return 0
        except ServiceStartError as exc:
            raise UserError(str(exc)) from exc
        finally:
            supervisor.stop_all()
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)

    def camera_ids(self) -> list[str]:
        """The cameras streamed: ``--camera`` and, with ``--cameras N``, the same camera on the next
        N-1 platforms (``demo/platform-1/side`` → ``demo/platform-2/side`` …), each its own ingest
        service. Separate platforms, so each camera's calls are its own (no fusion between them)."""
        return demo_cameras(self.camera, self.cameras)

    def ingest_services(self, bootstrap: str, store: str) -> list[Service]:
        """One supervised ingest per camera: ``ingest`` alone, ``ingest-1`` … ``ingest-N`` for several.

        ``--resume``: a restarted ingest continues the stream it was killed in, from the chunk after
        the last one the broker has, so a crash of the source loses and doubles no frame."""
        cameras = self.camera_ids()
        services = []
        for k, camera in enumerate(cameras, start=1):
            argv = ["ingest", str(self.video), "--broker", bootstrap, "--camera", camera]
            argv += ["--store", store, "--speed", str(self.speed), "--resume"]
            services.append(
                meetvar_service(
                    ingest_service_name(k, len(cameras)),
                    [*argv, "--loop"] if self.loop else argv,
                    restart="always" if self.loop else "on-failure",
                    stop_order=STOP_SOURCE,
                )
            )
        return services

    def services(self, bootstrap: str, data: Path, login_token: str) -> list[Service]:
        """The demo's services after the broker, started in this order. Add a service here."""
        b = bootstrap
        store = str(data / "objects")
        return [
            meetvar_service(
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
                env={
                    "MEETVAR_LOGIN_TOKEN": login_token,
                    "MEETVAR_WHIP_TOKENS": str(data / "whip-tokens.json"),
                    STATUS_ENV: str(data / "supervisor.json"),
                },
                stop_order=STOP_DASHBOARD,
            ),
            meetvar_service(
                "pose", ["pose-worker", "--broker", b, "--store", store], stop_order=STOP_CONSUMERS
            ),
            meetvar_service(
                "referee",
                ["referee", "--broker", b, "--data-dir", str(data / "referee")],
                stop_order=STOP_CONSUMERS,
            ),
            # Every chunk and decision kept in the object store: replays and audits read from there.
            meetvar_service(
                "archiver", ["archiver", "--broker", b, "--store", store], stop_order=STOP_CONSUMERS
            ),
            # Streamed once (--once), ingest is done when it exits 0; looping, it is restarted like the rest.
            *self.ingest_services(b, store),
            *self._meet_software(b),
        ]

    def _meet_line(self, bootstrap: str) -> str:
        meet, platform, camera = self.camera.split("/")
        where = f"meet {meet!r}, platform {platform!r}, camera {camera!r}"
        if self.liftingcast is not None:
            lc = self.liftingcast
            return f"{where}; lifters and lights from LiftingCast {lc.url} (its platform {lc.platform})"
        return (
            f"{where}; to take lifters and lights from LiftingCast: meetvar liftingcast URL --meet-id ID"
            f" --password PW --broker {bootstrap} --meet {meet} --platform LC_PLATFORM_ID={platform}"
        )

    def _meet_software(self, bootstrap: str) -> list[Service]:
        """The LiftingCast follower, when asked for: it names the lifts on the demo camera's platform."""
        lc = self.liftingcast
        if lc is None:
            return []
        meet, platform, _ = self.camera.split("/")
        argv = ["liftingcast", lc.url, "--meet-id", lc.meet_id, "--broker", bootstrap, "--meet", meet]
        argv += ["--platform", f"{lc.platform}={platform}"]
        if lc.api_key:
            argv += ["--api-key", lc.api_key]
        # The password in the environment, not argv (which any local user can read).
        return [
            meetvar_service(
                "liftingcast",
                argv,
                env={"MEETVAR_LIFTINGCAST_PASSWORD": lc.password},
                stop_order=STOP_SOURCE,
                final_codes=frozenset({UserError.exit_code}),
            )
        ]

    def _start_broker(self, supervisor: Supervisor, data: Path, logs: Path) -> tuple[str, str]:
        """Start (and supervise) the object store, unless --memory, then Tansu on it; the bootstrap and
        a phrase for where the broker keeps its log."""
        env: dict[str, str] = {"NO_COLOR": "1"}  # keep ANSI escapes out of the log file
        if self.memory:
            storage, where = "memory://tansu/", "in memory (--memory: nothing survives a broker restart)"
        else:
            s3 = self._start_object_store(supervisor, data / "s3", logs)
            s3.ensure_bucket(BROKER_BUCKET)
            storage = f"s3://{BROKER_BUCKET}/"
            env |= s3.tansu_env
            where = f"durable on SeaweedFS S3 at {s3.endpoint} ({data / 's3'})"
        binary = find_tansu_binary()
        for attempt in range(3):
            port = free_port(self.host)
            try:
                supervisor.start(
                    Service(
                        "broker",
                        tansu_command(binary, self.host, port, storage),
                        env=env,
                        ready=_wait_broker_ready(self.host, port, logs / "broker.log"),
                        stop_order=STOP_BROKER,
                        stop_grace=5.0,
                    )
                )
                return f"{self.host}:{port}", where
            except ServiceStartError as exc:
                if "address already in use" not in str(exc) or attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _start_object_store(self, supervisor: Supervisor, root: Path, logs: Path) -> SeaweedS3:
        config = root / "s3.json"
        access, secret = s3_credentials(config)
        store_dir = root / "data"
        store_dir.mkdir(parents=True, exist_ok=True)
        # Free ports can be taken between picking and binding: start again on fresh ones.
        for attempt in range(3):
            ports = WeedPorts.free(self.host)
            s3 = SeaweedS3(
                f"http://{self.host}:{ports.s3}", access, secret, DEFAULT_REGION, store_dir, logs / "s3.log"
            )
            try:
                supervisor.start(
                    Service(
                        "s3",
                        weed_command(store_dir, config, ports, self.host),
                        ready=functools.partial(_wait_s3, s3),
                        stop_order=STOP_STORE,
                        stop_grace=3.0,
                    )
                )
                return s3
            except ServiceStartError as exc:
                if "address already in use" not in str(exc) or attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _report_exit(self, name: str, code: int, tail: str) -> None:
        if name == "liftingcast" and code == UserError.exit_code:
            last = tail.strip().splitlines()[-1] if tail.strip() else "see its log"
            print(
                f"meetvar: the LiftingCast feed is not followed: {last}\n"
                "  fix --liftingcast-meet-id / --liftingcast-password and start the demo again;"
                " everything else keeps running.",
                file=sys.stderr,
                flush=True,
            )
            return
        if name.startswith("ingest") and code == 0 and not self.loop:
            print(
                "demo: the clip has been streamed once; the dashboard stays up. Ctrl-C to stop.", flush=True
            )
            return
        how = f"killed by signal {-code}" if code < 0 else f"exit {code}"
        print(
            f"meetvar: the {name} service stopped ({how}); restarting it. Its last log lines:\n{tail}",
            file=sys.stderr,
            flush=True,
        )


def ingest_service_name(k: int, cameras: int) -> str:
    """The supervised name of camera ``k``'s (1-based) ingest: ``ingest`` when it is the only one."""
    return "ingest" if cameras == 1 else f"ingest-{k}"


def demo_cameras(first: str, count: int) -> list[str]:
    """``count`` camera ids: ``first`` (meet/platform/camera), then the same camera on the platforms
    numbered after it (``platform-1`` → ``platform-2`` …; a platform without a number gets ``-2`` …)."""
    if count < 1:
        raise UserError(f"--cameras must be at least 1, got {count}")
    meet, platform, camera = first.split("/")
    match = re.fullmatch(r"(.+?)-?(\d+)", platform)
    base, number = (match.group(1), int(match.group(2))) if match else (platform, 1)
    out = [first]
    for k in range(1, count):
        out.append(f"{meet}/{base}-{number + k}/{camera}")
    return out


def _wait_s3(s3: SeaweedS3, proc: Popen[bytes]) -> None:
    wait_s3_ready(s3, proc, timeout=30.0)
