"""`storage rollback --to TIME`: deletions and overwrites made after TIME undone from the
bucket's versions, on a real S3 server (SeaweedFS) and moto, with and without Object Lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from datetime import timedelta

import pytest

from backup_engine.drill.embedded_s3 import LoopbackS3
from backup_engine.errors import UsageError
from backup_engine.storage.object_lock import ObjectLock
from backup_engine.storage.rollback import apply_rollback, plan_rollback
from backup_engine.storage.s3 import S3Storage

LOCK = ObjectLock("GOVERNANCE", (("postgres/", 2),))


@pytest.fixture(params=["seaweedfs", "moto"])
def server(request: pytest.FixtureRequest) -> LoopbackS3:
    fixture = "seaweed_s3" if request.param == "seaweedfs" else "embedded_s3"
    server: LoopbackS3 = request.getfixturevalue(fixture)
    return server


def _store(server: LoopbackS3, *, lock: bool) -> S3Storage:
    bucket = f"rb-{uuid.uuid4().hex[:12]}"
    client = server.storage().client
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=lock)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return S3Storage(bucket, "p", replace(server.options(), lock=LOCK if lock else None))


A = "postgres/base/20261206T000000Z/backup.json"
B = "postgres/base/20261206T000000Z/base.tar.zst"
C = "postgres/wal/000000010000000000000001.zst"
D = "postgres/base/20261206T010000Z/backup.json"


@pytest.mark.parametrize("lock", [False, True], ids=["versioned", "object-lock"])
def test_deletions_and_overwrites_since_are_undone(server: LoopbackS3, lock: bool) -> None:
    store = _store(server, lock=lock)
    genuine = {A: b'{"genuine": 1}', B: os.urandom(3000), C: b"segment"}
    for key, data in genuine.items():
        store.put_bytes(key, data, metadata={"sha256": "x" * 8})
    time.sleep(1.1)  # stores keep times to the second
    before = store.store_now()
    time.sleep(1.1)
    # the attack: a backup hidden, its data replaced, a forged backup planted; WAL untouched
    store.delete(A)
    store.put_bytes(B, b"encrypted by ransomware")
    store.put_bytes(D, b'{"forged": 1}')
    store.delete(D)
    store.put_bytes(D, b'{"forged": 2}')
    planted = store.full_key("postgres") + "/.planted"  # a key the tool never writes
    store.client.put_object(Bucket=store.bucket, Key=planted, Body=b"x")

    steps = {s.key: s.action for s in plan_rollback(store, before)}
    assert steps == {A: "undelete", B: "revert", D: "hide"}
    assert store.get_bytes(B) == b"encrypted by ransomware"  # planning changed nothing
    apply_rollback(store, plan_rollback(store, before))
    assert {i.key: store.get_bytes(i.key) for i in store.list()} == genuine
    assert store.stat(B).metadata.get("sha256") == "x" * 8  # the copy keeps its metadata
    if lock:
        assert store.lock_state(B).until is not None  # the copy is locked like any write
    assert plan_rollback(store, before) == []  # done: a second run changes nothing


def test_refusals(seaweed_s3: LoopbackS3) -> None:
    unversioned = S3Storage(f"rb-{uuid.uuid4().hex[:12]}", "p", seaweed_s3.options())
    unversioned.client.create_bucket(Bucket=unversioned.bucket)
    now = unversioned.store_now()
    with pytest.raises(UsageError, match="keeps no versions"):
        plan_rollback(unversioned, now - timedelta(hours=1))
    with pytest.raises(UsageError, match="in the future"):
        plan_rollback(unversioned, now + timedelta(hours=1))
    with pytest.raises(UsageError, match="time zone"):
        plan_rollback(unversioned, now.replace(tzinfo=None))


def _cli(server: LoopbackS3, repo: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **server.storage().environment(), "BACKUP_ENGINE_CONFIG": os.devnull}
    return subprocess.run(
        [sys.executable, "-m", "backup_engine", "--repo", repo, "storage", "rollback", *args],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


def test_the_command_refuses_while_a_backup_runs_and_reports_what_it_did(
    seaweed_s3: LoopbackS3,
) -> None:
    store = _store(seaweed_s3, lock=False)
    store.put_bytes(A, b"genuine")
    time.sleep(1.1)
    before = store.store_now().strftime("%Y-%m-%dT%H:%M:%SZ")
    time.sleep(1.1)
    store.delete(A)
    repo = f"s3://{store.bucket}/p"
    store.put_bytes("locks/postgres-base", json.dumps({"host": "db1", "pid": 1,
                    "since": store.store_now().isoformat()}).encode())  # fmt: skip
    running = _cli(seaweed_s3, repo, "--to", before)
    assert running.returncode == 2 and "postgres-base running" in running.stderr
    dry = _cli(seaweed_s3, repo, "--to", before, "--dry-run")
    assert dry.returncode == 0 and f"would undelete {A}" in dry.stdout
    assert not store.exists(A)
    store.delete("locks/postgres-base")
    done = _cli(seaweed_s3, repo, "--to", before, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["steps"][0]["action"] == "undelete"
    assert store.get_bytes(A) == b"genuine"
    for bad in ("yesterday", "2026-12-06T03:00"):
        wrong = _cli(seaweed_s3, repo, "--to", bad)
        assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1, wrong.stderr


def test_an_object_too_big_for_one_copy_is_copied_in_parts(
    seaweed_s3: LoopbackS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3 copies at most 5 GiB at once: a bigger base backup is reverted by ranges (made
    small here: 11 MiB in 5 MiB ranges)."""
    monkeypatch.setattr("backup_engine.storage.rollback.MAX_COPY", 1024 * 1024)
    monkeypatch.setattr("backup_engine.storage.rollback.COPY_PART", 5 * 1024 * 1024)
    store = _store(seaweed_s3, lock=True)
    genuine = os.urandom(11 * 1024 * 1024)
    store.put_bytes(B, genuine)
    time.sleep(1.1)
    before = store.store_now()
    time.sleep(1.1)
    store.put_bytes(B, b"ransom")
    apply_rollback(store, plan_rollback(store, before))
    assert store.get_bytes(B) == genuine
    assert store.lock_state(B).until is not None
