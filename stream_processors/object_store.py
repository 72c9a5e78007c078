"""Where chunks too large for a Kafka message, and archived video, are kept.

The default is a local folder; the interface is the small subset of S3 that meetvar needs, so an S3
bucket (through boto3) can stand in without the callers changing.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Protocol


class ObjectStoreError(Exception):
    pass


class ObjectStore(Protocol):
    def put(self, key: str, data: bytes) -> str:
        """Store ``data`` under ``key`` and return the reference that travels in messages."""
        ...

    def get(self, ref: str) -> bytes: ...


class LocalObjectStore:
    """A folder laid out by key (``meet/platform/camera/...``); refs are ``file://`` URLs."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise ObjectStoreError(f"object key {key!r} escapes the store root")
        return path

    def put(self, key: str, data: bytes) -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename: a reader never sees half an object, even if we are killed mid-write.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
        return path.as_uri()

    def get(self, ref: str) -> bytes:
        if not ref.startswith("file://"):
            raise ObjectStoreError(f"this store reads file:// refs, got {ref!r}")
        path = Path(ref.removeprefix("file://"))
        if self.root not in path.resolve().parents:
            raise ObjectStoreError(f"ref {ref!r} is outside the store root {self.root}")
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise ObjectStoreError(f"object {ref} is missing from the store") from exc
