"""The object store: a local folder and a real S3 API (SeaweedFS), behind one interface.

SeaweedFS checks SigV4 signatures and presigned-URL expiry for real, so the S3 tests here prove the
credentials and URL handling, not just the happy path of a mock.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import httpx
import pytest

from stream_processors.object_store import (
    LocalObjectStore,
    ObjectStoreError,
    PresignNotSupported,
    S3ObjectStore,
    object_store_from_url,
)
from stream_processors.tansu import free_port
from tests.conftest import SeaweedS3

KEYS = (
    "m1/p1/side/1700000000000000/00000000.ts",
    "m1/p1/side/1700000000000000/00000001.ts",
    "m1/p1/front/x.json",
)


def _payload(n: int) -> bytes:
    return os.urandom(n)


def _bucket() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


# --- local folder ---------------------------------------------------------------------------


def test_local_put_get_list(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    blobs = {k: _payload(1000 + i) for i, k in enumerate(KEYS)}
    refs = {k: store.put(k, v) for k, v in blobs.items()}
    assert all(r.startswith("file://") and r == store.ref(k) for k, r in refs.items())
    assert {k: store.get(r) for k, r in refs.items()} == blobs
    assert store.list("m1/p1/side/") == sorted(KEYS[:2])
    assert store.list("m1/p1/s") == sorted(KEYS[:2])  # a plain string prefix, as on S3
    assert store.list("m1/") == sorted(KEYS)
    assert store.list("nope/") == []
    # A half-written object (killed writer) is not listed.
    (tmp_path / "objects/m1/p1/side/.part-abc").write_bytes(b"half")
    assert store.list("m1/p1/side/") == sorted(KEYS[:2])


def test_local_refuses_escapes_and_foreign_refs(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "a")
    with pytest.raises(ObjectStoreError, match="relative path"):
        store.put("../evil", b"x")
    with pytest.raises(ObjectStoreError, match="outside the store root"):
        store.get((tmp_path / "elsewhere").as_uri())
    with pytest.raises(ObjectStoreError, match="point the reader at the store"):
        store.get("s3://bucket/key")
    with pytest.raises(ObjectStoreError, match="missing"):
        store.get(store.ref("m/p/c/none.ts"))
    with pytest.raises(PresignNotSupported, match="s3:// store"):
        store.presigned_url(store.put("k/v", b"1"))


def test_local_keys_with_spaces_round_trip(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    ref = store.put("Spring Open/platform 1/side/1.ts", b"abc")
    assert "%20" in ref and store.get(ref) == b"abc"


def test_factory_parses_urls(tmp_path: Path) -> None:
    assert isinstance(object_store_from_url(str(tmp_path / "x")), LocalObjectStore)
    local = object_store_from_url((tmp_path / "y").as_uri())
    assert isinstance(local, LocalObjectStore) and local.root == (tmp_path / "y").resolve()
    s3 = object_store_from_url("s3://arch/meets/2026?endpoint=http://127.0.0.1:9&region=eu-west-1")
    assert isinstance(s3, S3ObjectStore)
    assert (s3.bucket, s3.prefix, s3.endpoint_url, s3.region) == (
        "arch",
        "meets/2026/",
        "http://127.0.0.1:9",
        "eu-west-1",
    )
    assert s3.ref("m/p/c/1.ts") == "s3://arch/meets/2026/m/p/c/1.ts"
    with pytest.raises(ObjectStoreError, match="AWS_ACCESS_KEY_ID"):
        object_store_from_url("s3://arch?secret=oops")
    with pytest.raises(ObjectStoreError, match="unsupported store URL"):
        object_store_from_url("ftp://host/x")


# --- S3 (SeaweedFS) -------------------------------------------------------------------------


def test_s3_write_list_read_back_identical(seaweed: SeaweedS3) -> None:
    store = seaweed.store(_bucket())
    blobs = {k: _payload(200_000 + i) for i, k in enumerate(KEYS)}
    refs = {k: store.put(k, v) for k, v in blobs.items()}
    assert refs[KEYS[0]] == f"s3://{store.bucket}/{KEYS[0]}"
    assert store.list("m1/p1/side/") == sorted(KEYS[:2])
    assert store.list() == sorted(KEYS)
    for key, data in blobs.items():
        assert store.get(refs[key]) == data
    # Idempotent: the same key again overwrites, it never adds.
    store.put(KEYS[0], b"again")
    assert store.get(refs[KEYS[0]]) == b"again" and store.list() == sorted(KEYS)


def test_s3_prefix_scopes_keys(seaweed: SeaweedS3) -> None:
    bucket = _bucket()
    seaweed.store(bucket)
    scoped = S3ObjectStore(bucket, prefix="archive/", endpoint_url=seaweed.endpoint, client=seaweed.client())
    ref = scoped.put("m/p/c/1.ts", b"one")
    assert ref == f"s3://{bucket}/archive/m/p/c/1.ts"
    assert scoped.list() == ["m/p/c/1.ts"]
    assert seaweed.store(bucket).list() == ["archive/m/p/c/1.ts"]


def test_s3_presigned_url_works_over_plain_http_then_expires(seaweed: SeaweedS3) -> None:
    store = seaweed.store(_bucket())
    data = _payload(50_000)
    ref = store.put("m/p/c/clip.ts", data)
    url = store.presigned_url(ref, expires_s=600)
    got = httpx.get(url, timeout=5)
    assert got.status_code == 200 and got.content == data
    # Tampering with the signed URL is refused.
    assert httpx.get(url.replace("clip.ts", "clip2.ts"), timeout=5).status_code == 403
    # The signature's date has whole seconds: sign just after a second begins, or a 1 s URL signed late
    # in its second may already be expired when the request lands (seen once on a loaded CI run).
    time.sleep(1.0 - time.time() % 1.0 + 0.01)
    short = store.presigned_url(ref, expires_s=1)
    assert httpx.get(short, timeout=5).status_code == 200
    time.sleep(2.1)
    expired = httpx.get(short, timeout=5)
    assert expired.status_code == 403 and "expired" in expired.text.lower()
    with pytest.raises(ObjectStoreError, match="1 s to 7 days"):
        store.presigned_url(ref, expires_s=0)


def test_s3_wrong_secret_refused_with_advice(seaweed: SeaweedS3) -> None:
    bucket = _bucket()
    good = seaweed.store(bucket)
    ref = good.put("m/p/c/1.ts", b"secret video")
    bad = S3ObjectStore(bucket, endpoint_url=seaweed.endpoint, client=seaweed.client(secret_key="wrong"))
    with pytest.raises(ObjectStoreError, match=r"refused our credentials.*AWS_SECRET_ACCESS_KEY"):
        bad.get(ref)
    with pytest.raises(ObjectStoreError, match="refused our credentials"):
        bad.put("m/p/c/2.ts", b"x")
    with pytest.raises(ObjectStoreError, match="missing"):
        good.get(good.ref("m/p/c/none.ts"))
    with pytest.raises(ObjectStoreError, match="not in bucket"):
        good.get("s3://other-bucket/m/p/c/1.ts")


def test_s3_credentials_from_environment_via_url(seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in seaweed.env.items():
        monkeypatch.setenv(name, value)
    store = object_store_from_url(seaweed.url(_bucket()))
    assert isinstance(store, S3ObjectStore)
    store.ensure_bucket()
    store.ensure_bucket()  # idempotent
    assert store.get(store.put("a/b", b"env")) == b"env"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "nope")
    with pytest.raises(ObjectStoreError, match="refused our credentials"):
        object_store_from_url(seaweed.url(store.bucket)).get(store.ref("a/b"))


def test_s3_unreachable_endpoint_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    store = object_store_from_url(f"s3://b?endpoint=http://127.0.0.1:{free_port()}")
    with pytest.raises(ObjectStoreError, match="cannot reach the S3 endpoint"):
        store.put("a/b", b"x")
