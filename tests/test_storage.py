"""One contract, every backend: the same tests run against the local directory store and S3
(moto's real HTTP server). Set TEST_S3_URL (with AWS_* credentials) to add a real bucket."""

from __future__ import annotations

import hashlib
import itertools
import os
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backup_engine.drill.embedded_s3 import EmbeddedS3
from backup_engine.drill.seaweedfs import SeaweedS3
from backup_engine.errors import (
    BucketNotFound,
    ObjectExists,
    ObjectNotFound,
    StorageUnreachable,
    UsageError,
)
from backup_engine.storage import LocalStorage, S3Options, S3Storage, Storage, open_storage
from backup_engine.storage.encrypted import EncryptedStorage

MiB = 1024 * 1024
BACKENDS = ["local", "s3", "seaweedfs", "local-encrypted", "s3-encrypted"] + (
    ["s3-external"] if os.environ.get("TEST_S3_URL") else []
)


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    prefix = f"test-{uuid.uuid4().hex[:10]}"
    kind, _, encrypted = request.param.partition("-")
    store: Storage
    if kind == "local":
        store = LocalStorage(tmp_path / "repo")
    elif encrypted == "external":
        store = open_storage(f"{os.environ['TEST_S3_URL'].rstrip('/')}/{prefix}", S3Options())
    else:
        server = "seaweed_s3" if kind == "seaweedfs" else "embedded_s3"
        embedded: EmbeddedS3 = request.getfixturevalue(server)
        # Small parts so a few MiB exercise multipart uploads and ranged reads.
        store = S3Storage(embedded.bucket, prefix, replace(embedded.options(), part_size=5 * MiB))
    return EncryptedStorage(store, os.urandom(32)) if encrypted == "encrypted" else store


def _write(storage: Storage, key: str, chunks: list[bytes]) -> str:
    with storage.writer(key) as out:
        for chunk in chunks:
            out.write(chunk)
        return out.commit().sha256


def test_put_and_get_round_trip(storage: Storage) -> None:
    stored = storage.put_bytes("a/b/c.bin", b"hello")
    assert stored.size == 5
    assert stored.sha256 == hashlib.sha256(b"hello").hexdigest()
    assert storage.get_bytes("a/b/c.bin") == b"hello"
    assert storage.stat("a/b/c.bin").size == 5
    assert storage.exists("a/b/c.bin")


def test_streamed_multipart_object_reads_back_identically(storage: Storage) -> None:
    chunks = [os.urandom(MiB) for _ in range(12)]  # 12 MiB: three 5 MiB parts on S3
    sha = _write(storage, "big.bin", chunks)
    data = b"".join(chunks)
    assert sha == hashlib.sha256(data).hexdigest()
    with storage.open_reader("big.bin") as reader:
        pieces = []
        while piece := reader.read(777_777):
            pieces.append(piece)
    assert b"".join(pieces) == data


def test_empty_object(storage: Storage) -> None:
    assert _write(storage, "empty", []) == hashlib.sha256(b"").hexdigest()
    assert storage.get_bytes("empty") == b""


def test_nothing_is_visible_before_commit_and_abort_leaves_nothing(storage: Storage) -> None:
    with storage.writer("partial.bin") as out:
        out.write(os.urandom(6 * MiB))  # past one part on S3: a multipart upload is open
        assert not storage.exists("partial.bin")
        out.abort()
    assert list(storage.list()) == []
    if isinstance(storage, S3Storage):
        uploads = storage.client.list_multipart_uploads(Bucket=storage.bucket)
        assert not [u for u in uploads.get("Uploads", []) if u["Key"].startswith(storage.prefix)]


def test_an_exception_while_writing_leaves_nothing(storage: Storage) -> None:
    with pytest.raises(RuntimeError), storage.writer("failed.bin") as out:
        out.write(b"x" * 100)
        raise RuntimeError("source died")
    assert not storage.exists("failed.bin")
    assert list(storage.list()) == []


def test_missing_key_raises_object_not_found(storage: Storage) -> None:
    with pytest.raises(ObjectNotFound):
        storage.stat("nope")
    with pytest.raises(ObjectNotFound):
        storage.open_reader("nope")
    with pytest.raises(ObjectNotFound):
        storage.get_bytes("nope")
    assert not storage.exists("nope")


def test_delete_is_idempotent(storage: Storage) -> None:
    storage.put_bytes("gone", b"1")
    storage.delete("gone")
    storage.delete("gone")
    assert not storage.exists("gone")


def test_list_is_sorted_and_filtered_by_prefix(storage: Storage) -> None:
    for key in ("p/b", "p/a", "q/c", "p/sub/d"):
        storage.put_bytes(key, key.encode())
    assert [i.key for i in storage.list("p/")] == ["p/a", "p/b", "p/sub/d"]
    assert [i.key for i in storage.list()] == ["p/a", "p/b", "p/sub/d", "q/c"]
    assert [i.size for i in storage.list("q/")] == [3]


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "./a", "a/", "a/.hidden"])
def test_unsafe_keys_are_refused(storage: Storage, key: str) -> None:
    with pytest.raises(UsageError):
        storage.put_bytes(key, b"x")


def test_check_passes_on_a_reachable_store_and_writes_nothing(storage: Storage) -> None:
    storage.put_bytes("k", b"v")
    before = [(i.key, i.size) for i in storage.list()]
    assert storage.check() is None  # a store that fails raises StorageUnreachable (tests below)
    assert [(i.key, i.size) for i in storage.list()] == before == [("k", 1)]


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 3000), max_size=6))
def test_any_chunking_stores_the_same_bytes(storage: Storage, data: bytes, cuts: list[int]) -> None:
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds)]
    sha = _write(storage, "prop.bin", chunks)
    assert sha == hashlib.sha256(data).hexdigest()
    assert storage.get_bytes("prop.bin") == data


# --- backend-specific behaviour -------------------------------------------------------------


def test_s3_requests_server_side_encryption(embedded_s3: EmbeddedS3) -> None:
    store = S3Storage(embedded_s3.bucket, "sse", replace(embedded_s3.options(), sse="AES256"))
    store.put_bytes("small", b"x")
    with store.writer("big") as out:
        out.write(os.urandom(17 * MiB))
        out.commit()
    for key in ("sse/small", "sse/big"):
        head = store.client.head_object(Bucket=embedded_s3.bucket, Key=key)
        assert head["ServerSideEncryption"] == "AES256"


def test_s3_missing_bucket_is_reported(embedded_s3: EmbeddedS3) -> None:
    store = S3Storage("no-such-bucket", "", embedded_s3.options())
    with pytest.raises(BucketNotFound, match="no-such-bucket"):
        store.check()
    with pytest.raises(BucketNotFound):
        list(store.list())


def test_s3_unreachable_endpoint_is_reported() -> None:
    from backup_engine.net import free_port

    options = S3Options(
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        access_key_id="a",
        secret_access_key="b",
        region="us-east-1",
    )
    with pytest.raises(StorageUnreachable, match="cannot reach"):
        S3Storage("bucket", "", options).check()


def test_local_missing_root_is_reported(tmp_path: Path) -> None:
    with pytest.raises(StorageUnreachable, match="does not exist"):
        LocalStorage(tmp_path / "absent").check()


def test_local_partial_files_are_not_listed(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    writer = store.writer("x/y")
    writer.write(b"half")
    assert list(store.list()) == []
    writer.abort()
    assert not any(tmp_path.rglob("*partial*"))


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("s3://bucket/some/prefix", S3Storage),
        ("file:///var/backups", LocalStorage),
        ("/var/backups", LocalStorage),
    ],
)
def test_open_storage_by_url(url: str, kind: type) -> None:
    assert isinstance(open_storage(url, S3Options(region="us-east-1")), kind)


@pytest.mark.parametrize("url", ["s3://", "ftp://x/y", "relative/path", "file://host/path"])
def test_open_storage_rejects_bad_urls(url: str) -> None:
    with pytest.raises(UsageError):
        open_storage(url)


def test_s3_kms_encryption_uses_the_configured_key(embedded_s3: EmbeddedS3) -> None:
    import boto3

    options = embedded_s3.options()
    kms = boto3.client(
        "kms",
        endpoint_url=options.endpoint_url,
        region_name=options.region,
        aws_access_key_id=options.access_key_id,
        aws_secret_access_key=options.secret_access_key,
    )
    key_id = kms.create_key(Description="backups")["KeyMetadata"]["KeyId"]
    store = S3Storage(embedded_s3.bucket, "kms", replace(options, sse="aws:kms", kms_key_id=key_id))
    store.put_bytes("small", b"x")
    head = store.client.head_object(Bucket=embedded_s3.bucket, Key="kms/small")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert key_id in head["SSEKMSKeyId"]


def test_metadata_is_stored_with_the_object(storage: Storage) -> None:
    storage.put_bytes("m/obj", b"data", metadata={"sha256": "abc", "raw-size": "4"})
    assert dict(storage.stat("m/obj").metadata) == {"sha256": "abc", "raw-size": "4"}
    storage.put_bytes("m/plain", b"data")
    assert dict(storage.stat("m/plain").metadata) == {}
    assert [i.key for i in storage.list("m/")] == ["m/obj", "m/plain"]


@pytest.mark.parametrize("size", [10, 12 * MiB])  # single PUT and multipart
def test_if_absent_never_replaces_an_object(storage: Storage, size: int) -> None:
    storage.put_bytes("wal/seg", b"first", metadata={"sha256": "1"})
    with pytest.raises(ObjectExists), storage.writer("wal/seg", if_absent=True) as out:
        out.write(os.urandom(size))
        out.commit()
    assert storage.get_bytes("wal/seg") == b"first"
    assert dict(storage.stat("wal/seg").metadata) == {"sha256": "1"}
    assert [i.key for i in storage.list("wal/")] == ["wal/seg"]
    storage.put_bytes("wal/new", b"x", if_absent=True)
    assert storage.get_bytes("wal/new") == b"x"


@pytest.mark.parametrize("server", ["embedded_s3", "seaweed_s3"])
def test_concurrent_if_absent_writes_have_one_winner(
    server: str, request: pytest.FixtureRequest
) -> None:
    """Eight writers of one key at once, as eight archivers racing for one WAL segment: exactly
    one wins, the others are refused, and the object is one writer's bytes, whole: on moto and
    on a real server (SeaweedFS), as AWS documents for If-None-Match."""
    import threading

    s3 = request.getfixturevalue(server)
    store = S3Storage(s3.bucket, f"race-{uuid.uuid4().hex[:8]}", s3.options())
    bodies = [os.urandom(64 * 1024) for _ in range(8)]
    outcome: list[str] = []
    start = threading.Barrier(len(bodies))

    def write(body: bytes) -> None:
        start.wait()
        try:
            store.put_bytes("wal/seg", body, if_absent=True)
            outcome.append("won")
        except ObjectExists:
            outcome.append("refused")

    threads = [threading.Thread(target=write, args=(b,)) for b in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcome) == ["refused"] * 7 + ["won"], outcome
    assert store.get_bytes("wal/seg") in bodies


def test_listing_pages_past_a_thousand_keys(seaweed_s3: SeaweedS3) -> None:
    store = S3Storage(seaweed_s3.bucket, f"many-{uuid.uuid4().hex[:8]}", seaweed_s3.options())
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: store.put_bytes(f"k/{n:05d}", b""), range(1234)))
    assert [i.key for i in store.list("k/")] == [f"k/{n:05d}" for n in range(1234)]
