"""Where chunks too large for a Kafka message, and archived video, are kept.

The default is a local folder; the interface is the small subset of S3 that meetvar needs, so an S3
bucket (through boto3) can stand in without the callers changing:

* :class:`ObjectStore` — ``put``/``get``: all that the claim check (ingest → pose worker) needs.
* :class:`BrowsableObjectStore` — adds ``ref``, ``list`` and ``presigned_url``: what the archive,
  replay and the dashboard's replay clips need.

Keys are ``/``-separated relative paths (``meet/platform/camera/<stream_start_us>/<seq>.ts``); a *ref*
is the absolute name that travels in messages (``file:///…`` or ``s3://bucket/…``), so a reader can tell
which store holds an object. :func:`object_store_from_url` turns a ``--store`` argument into a store.

Every failure of the world (missing object, bad credentials, unreachable endpoint, missing bucket)
becomes :class:`ObjectStoreError` with a message that says what to do; consumers log it and go on.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit
from urllib.request import url2pathname

__all__ = [
    "BrowsableObjectStore",
    "ForeignRef",
    "LocalObjectStore",
    "ObjectMissing",
    "ObjectStore",
    "ObjectStoreError",
    "PresignNotSupported",
    "S3ObjectStore",
    "object_store_from_url",
]


class ObjectStoreError(Exception):
    """An object could not be stored or read; ``str(exc)`` is one line that says what to do."""


class ObjectMissing(ObjectStoreError):
    """The store answered, and the object is not there: retrying will not help."""


class ForeignRef(ObjectStoreError):
    """The ref names an object of another store: this one will never be able to read it."""


class PresignNotSupported(ObjectStoreError):
    """The store cannot hand out URLs (a local folder): callers serve the bytes themselves instead."""


class ObjectStore(Protocol):
    def put(self, key: str, data: bytes) -> str:
        """Store ``data`` under ``key`` and return the reference that travels in messages."""
        ...

    def get(self, ref: str) -> bytes: ...


class BrowsableObjectStore(ObjectStore, Protocol):
    """A store that can also name, enumerate and share its objects (archive, replay, dashboard)."""

    def ref(self, key: str) -> str:
        """The ref :meth:`put` returns for ``key``, without storing anything."""
        ...

    def list(self, prefix: str = "") -> list[str]:
        """Keys starting with ``prefix`` (a plain string prefix, as S3 does), sorted."""
        ...

    def presigned_url(self, ref: str, expires_s: int = 3600) -> str:
        """A URL that lets anyone holding it GET the object for ``expires_s`` seconds."""
        ...


def _check_key(key: str) -> str:
    if not key or key.startswith("/") or any(part in ("", ".", "..") for part in key.split("/")):
        raise ObjectStoreError(f"object key {key!r} must be a relative path like meet/platform/camera/x.ts")
    return key


class LocalObjectStore:
    """A folder laid out by key (``meet/platform/camera/...``); refs are ``file://`` URLs."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ObjectStoreError(
                f"cannot create the object-store folder {self.root} ({exc.strerror})"
                " — pass a writable --store"
            ) from exc

    def __repr__(self) -> str:
        return f"LocalObjectStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        path = (self.root / _check_key(key)).resolve()
        if self.root not in path.parents:
            raise ObjectStoreError(f"object key {key!r} escapes the store root")
        return path

    def ref(self, key: str) -> str:
        return self._path(key).as_uri()

    def put(self, key: str, data: bytes) -> str:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename: a reader never sees half an object, even if we are killed mid-write.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise ObjectStoreError(
                f"cannot write {path} ({exc.strerror or exc})"
                f" — check free space and permissions of {self.root}"
            ) from exc
        return path.as_uri()

    def get(self, ref: str) -> bytes:
        if not ref.startswith("file://"):
            raise ForeignRef(
                f"this store reads file:// refs, got {ref!r} — point the reader at the store that wrote it"
            )
        path = Path(url2pathname(urlsplit(ref).path))
        if self.root not in path.resolve().parents:
            raise ForeignRef(
                f"ref {ref!r} is outside the store root {self.root}"
                " — point the reader at the store that wrote it"
            )
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise ObjectMissing(f"object {ref} is missing from the store") from exc
        except OSError as exc:
            raise ObjectStoreError(f"cannot read {path} ({exc.strerror or exc})") from exc

    def list(self, prefix: str = "") -> list[str]:
        # Walk only the deepest folder the prefix names fully: listing one meet never walks the others.
        folder, _, _ = prefix.rpartition("/")
        base = self.root / folder if folder else self.root
        if not base.is_dir():
            return []
        keys = []
        for dirpath, _dirs, files in os.walk(base):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in files:
                if name.startswith(".part-"):
                    continue  # a write in progress (or one killed mid-write), not an object
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def presigned_url(self, ref: str, expires_s: int = 3600) -> str:
        raise PresignNotSupported(
            "a local-folder store cannot hand out expiring URLs — serve the bytes from get() "
            "(the dashboard does), or use an s3:// store"
        )


def _s3_error(exc: Exception, what: str, endpoint: str) -> ObjectStoreError:
    """Translate a botocore failure into one line that says what to do."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
    )

    if isinstance(exc, NoCredentialsError):
        return ObjectStoreError(
            f"{what}: no S3 credentials — set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
        )
    if isinstance(exc, EndpointConnectionError):
        return ObjectStoreError(
            f"{what}: cannot reach the S3 endpoint {endpoint} — start it, or fix ?endpoint= in the store URL"
        )
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("NoSuchKey", "404", "NotFound"):
            return ObjectMissing(f"{what}: the object is missing from the store")
        if code == "NoSuchBucket":
            return ObjectStoreError(f"{what}: the bucket does not exist — create it (the archiver does)")
        if code in ("SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied", "403") or status == 403:
            return ObjectStoreError(
                f"{what}: the S3 endpoint {endpoint} refused our credentials ({code}) — check"
                " AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the bucket policy"
            )
        return ObjectStoreError(f"{what}: S3 error {code or status} — {exc}")
    if isinstance(exc, BotoCoreError):
        return ObjectStoreError(f"{what}: {exc}")
    return ObjectStoreError(f"{what}: {exc}")


class S3ObjectStore:
    """A bucket (optionally a prefix in it) on any S3 API — AWS, SeaweedFS, MinIO — through boto3.

    Refs are ``s3://bucket/<prefix/>key``. Credentials come from boto3's usual chain (environment,
    profile, instance role); never from the store URL, which ends up in logs and process lists. A
    custom ``endpoint_url`` gets path-style addressing, which every S3 clone understands.
    """

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        client: Any = None,
    ) -> None:
        if not bucket:
            raise ObjectStoreError("an S3 store needs a bucket: s3://BUCKET[/prefix][?endpoint=URL]")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url
        self.region = region
        if client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                signature_version="s3v4",
                s3={"addressing_style": "path" if endpoint_url else "auto"},
                retries={"max_attempts": 4, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
            )
            # A session of our own: boto3's default session caches the credentials it first resolved
            # for the life of the process, and its client creation is not thread-safe.
            client = boto3.session.Session().client(
                "s3", endpoint_url=endpoint_url, region_name=region, config=config
            )
        self.client = client

    def __repr__(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"S3ObjectStore(s3://{self.bucket}/{self.prefix}{where})"

    @property
    def _where(self) -> str:
        return self.endpoint_url or f"AWS S3 ({self.region})"

    def ref(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{_check_key(key)}"

    def _object_name(self, ref: str) -> str:
        """The S3 object name (with prefix) of a ref this store wrote."""
        head = f"s3://{self.bucket}/"
        if not ref.startswith(head):
            raise ForeignRef(
                f"ref {ref!r} is not in bucket {self.bucket!r} — point the reader at the store that wrote it"
            )
        return ref[len(head) :]

    def ensure_bucket(self) -> None:
        """Create the bucket unless it exists: a fresh archive needs no manual set-up step."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code not in ("404", "NoSuchBucket", "NotFound"):
                raise _s3_error(exc, f"checking bucket {self.bucket}", self._where) from exc
        except BotoCoreError as exc:
            raise _s3_error(exc, f"checking bucket {self.bucket}", self._where) from exc
        try:
            if self.region == "us-east-1":
                self.client.create_bucket(Bucket=self.bucket)
            else:
                self.client.create_bucket(
                    Bucket=self.bucket, CreateBucketConfiguration={"LocationConstraint": self.region}
                )
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise _s3_error(exc, f"creating bucket {self.bucket}", self._where) from exc
        except BotoCoreError as exc:
            raise _s3_error(exc, f"creating bucket {self.bucket}", self._where) from exc

    def put(self, key: str, data: bytes) -> str:
        ref = self.ref(key)
        try:
            # One PUT is atomic on S3: readers see the old object or the new one, never half of it.
            self.client.put_object(Bucket=self.bucket, Key=self._object_name(ref), Body=data)
        except Exception as exc:
            raise _s3_error(exc, f"writing {ref}", self._where) from exc
        return ref

    def get(self, ref: str) -> bytes:
        name = self._object_name(ref)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=name)
            body: bytes = response["Body"].read()
        except Exception as exc:
            raise _s3_error(exc, f"reading {ref}", self._where) from exc
        return body

    def list(self, prefix: str = "") -> list[str]:
        return sorted(self._iter_keys(prefix))

    def _iter_keys(self, prefix: str) -> Iterator[str]:
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    yield item["Key"][len(self.prefix) :]
        except Exception as exc:
            raise _s3_error(exc, f"listing s3://{self.bucket}/{self.prefix}{prefix}", self._where) from exc

    def presigned_url(self, ref: str, expires_s: int = 3600) -> str:
        """A SigV4 query-signed GET URL; the server refuses it after ``expires_s`` (max 7 days on AWS)."""
        if not 1 <= expires_s <= 7 * 24 * 3600:
            raise ObjectStoreError(f"presigned URLs live 1 s to 7 days, got {expires_s} s")
        try:
            url: str = self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self._object_name(ref)},
                ExpiresIn=expires_s,
            )
        except Exception as exc:
            raise _s3_error(exc, f"signing a URL for {ref}", self._where) from exc
        return url


def object_store_from_url(url: str | os.PathLike[str]) -> LocalObjectStore | S3ObjectStore:
    """``--store`` → store: ``file:///abs/path``, a plain path, or ``s3://bucket[/prefix][?endpoint=URL&region=R]``.

    S3 credentials come from the environment (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` or a
    profile), not from the URL.
    """
    text = os.fspath(url)
    if "://" not in text:
        if not text:
            raise ObjectStoreError("empty store URL — pass a folder, file:///path or s3://bucket")
        return LocalObjectStore(Path(text))
    parts = urlsplit(text)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ObjectStoreError(f"file URL {text!r} names a host — use file:///absolute/path")
        return LocalObjectStore(Path(url2pathname(parts.path)))
    if parts.scheme == "s3":
        query = parse_qs(parts.query)
        unknown = set(query) - {"endpoint", "region"}
        if unknown:
            raise ObjectStoreError(
                f"unknown store URL option(s) {sorted(unknown)} — only ?endpoint=URL and &region=NAME; "
                "credentials go in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
            )
        endpoint = query.get("endpoint", [None])[0]
        env_region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        region = query.get("region", [env_region])[0]
        return S3ObjectStore(
            unquote(parts.netloc),
            prefix=unquote(parts.path),
            endpoint_url=endpoint,
            region=region or "us-east-1",
        )
    raise ObjectStoreError(
        f"unsupported store URL {text!r} — use a folder, file:///path or s3://bucket?endpoint=URL"
    )
