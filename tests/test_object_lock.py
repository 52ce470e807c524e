"""S3 Object Lock: every object a backup writes carries a retention that covers the plan, the
store (not the tool) refuses to delete or shorten it, and expire plans around what is locked.

On SeaweedFS (a real S3 server, which enforces Object Lock as AWS documents) and on moto where
the two differ: moto drops the retention given to a multipart upload, which the writer then
puts on the finished object, and moto does not refuse a shortened GOVERNANCE retention."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from backup_engine.codecs import get_codec
from backup_engine.drill.embedded_s3 import LoopbackS3
from backup_engine.expire import apply_expire, plan_expire
from backup_engine.media.packs import PackUploader
from backup_engine.media.prune import apply_prune, plan_prune
from backup_engine.media.restore import restore_media
from backup_engine.media.snapshot import take_media_snapshot
from backup_engine.postgres.lsn import format_lsn
from backup_engine.postgres.manifest import BaseBackupManifest
from backup_engine.retention import RetentionPolicy
from backup_engine.storage.object_lock import ObjectLock, plan_lock
from backup_engine.storage.s3 import S3Storage
from tests.test_manifest import sample_manifest, store_backup

MiB = 1024 * 1024
LOCK = ObjectLock("GOVERNANCE", (("postgres/", 3), ("redis/", 2), ("drill-reports/", 5)))


@pytest.fixture(params=["seaweedfs", "moto"])
def server(request: pytest.FixtureRequest) -> LoopbackS3:
    fixture = "seaweed_s3" if request.param == "seaweedfs" else "embedded_s3"
    server: LoopbackS3 = request.getfixturevalue(fixture)
    return server


def _locked_store(server: LoopbackS3, lock: ObjectLock | None = LOCK) -> S3Storage:
    """A new bucket with Object Lock switched on and no default retention: what an object
    carries is what the writer gave it."""
    bucket = f"lock-{uuid.uuid4().hex[:12]}"
    server.storage().client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    return S3Storage(bucket, "p", replace(server.options(), part_size=5 * MiB, lock=lock))


def _close(when: datetime | None, expected: datetime) -> bool:
    return when is not None and abs((when - expected).total_seconds()) < 120


def test_every_object_is_locked_as_long_as_the_plan_keeps_its_kind(server: LoopbackS3) -> None:
    store = _locked_store(server)
    now = store.store_now()
    store.put_bytes("postgres/base/20261206T000000Z/backup.json", b"{}")
    with store.writer("postgres/base/20261206T000000Z/base.tar.zst") as out:  # multipart
        out.write(b"x" * (11 * MiB))
        out.commit()
    store.put_bytes("postgres/wal/000000010000000000000001.zst", b"w")
    store.put_bytes("redis/20261206T000000Z/dump.rdb.zst", b"r")
    store.put_bytes("drill-reports/20261206T000000Z-1/report.json", b"{}")
    store.put_bytes("locks/postgres-base", b"holder")
    days = {"postgres/base/": 3, "postgres/wal/": 3, "redis/": 2, "drill-reports/": 5}
    for info in store.list():
        state = store.lock_state(info.key)
        if info.key.startswith("locks/"):
            assert state.until is None, "a lock file must stay deletable"
            continue
        (want,) = [d for prefix, d in days.items() if info.key.startswith(prefix)]
        assert state.mode == "GOVERNANCE", info.key
        assert _close(state.until, now + timedelta(days=want)), (info.key, state)


def test_the_retention_date_comes_from_the_stores_clock(
    seaweed_s3: LoopbackS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host whose clock is three days slow still locks for the plan's days of real time."""
    store = _locked_store(seaweed_s3)
    real_now = datetime.now(UTC)

    class Slow(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return datetime.now(tz) - timedelta(days=3)

    monkeypatch.setattr("backup_engine.storage.s3.datetime", Slow)
    store.put_bytes("postgres/wal/000000010000000000000002.zst", b"w")
    state = store.lock_state("postgres/wal/000000010000000000000002.zst")
    assert _close(state.until, real_now + timedelta(days=3)), state


def test_nobody_deletes_or_shortens_a_locked_version(seaweed_s3: LoopbackS3) -> None:
    """With the owner's own keys: deleting the version is refused, shortening a GOVERNANCE
    retention needs the bypass permission, a COMPLIANCE one cannot be shortened at all; the
    object stays readable. A delete without a version only hides it behind a marker."""
    key = "postgres/base/20261206T000000Z/base.tar.zst"
    for mode in ("GOVERNANCE", "COMPLIANCE"):
        store = _locked_store(seaweed_s3, replace(LOCK, mode=mode))
        store.put_bytes(key, b"genuine")
        client, bucket, full = store.client, store.bucket, store.full_key(key)
        version = client.head_object(Bucket=bucket, Key=full)["VersionId"]
        soon: Any = {"Mode": mode, "RetainUntilDate": datetime.now(UTC) + timedelta(seconds=5)}
        version_of: Any = {"Bucket": bucket, "Key": full, "VersionId": version}
        attempts: list[Any] = [
            partial(client.delete_object, **version_of),
            partial(client.put_object_retention, **version_of, Retention=soon),
        ]
        if mode == "COMPLIANCE":
            attempts.append(
                partial(
                    client.put_object_retention,
                    **version_of,
                    Retention=soon,
                    BypassGovernanceRetention=True,
                )
            )
        for attempt in attempts:
            with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
                attempt()
        client.delete_object(Bucket=bucket, Key=full)  # a delete marker, not a deletion
        body = client.get_object(Bucket=bucket, Key=full, VersionId=version)["Body"].read()
        assert body == b"genuine"


def test_a_bucket_without_object_lock_refuses_in_one_line(seaweed_s3: LoopbackS3) -> None:
    bucket = f"plain-{uuid.uuid4().hex[:12]}"
    seaweed_s3.storage().client.create_bucket(Bucket=bucket)
    store = S3Storage(bucket, "p", replace(seaweed_s3.options(), lock=LOCK))
    with pytest.raises(Exception, match="has no Object Lock") as caught:
        store.put_bytes("postgres/wal/000000010000000000000001.zst", b"w")
    assert "\n" not in str(caught.value)


SEG = 16 * MiB


def _daily(now: datetime, days_ago: int, number: int) -> BaseBackupManifest:
    stop = now - timedelta(days=days_ago)
    return replace(
        sample_manifest(), backup_id=stop.strftime("%Y%m%dT%H%M%SZ"),
        start_time=stop - timedelta(seconds=5), stop_time=stop,
        start_lsn=format_lsn(number * SEG + 0x28), stop_lsn=format_lsn(number * SEG + 0x100),
    )  # fmt: skip


def test_expire_keeps_what_is_locked_and_removes_it_once_the_lock_has_passed(
    seaweed_s3: LoopbackS3,
) -> None:
    """Three daily backups, the plan keeps one: the two older ones stay listed, with the date
    their lock ends, until it has; then a later expire removes them. (A GOVERNANCE lock is
    shortened here with the bypass permission, to see that later run without waiting days.)"""
    store = _locked_store(seaweed_s3, replace(LOCK, days=(("postgres/", 1),)))
    now = datetime.now(UTC) + timedelta(days=10)  # the plan's clock: the backups are old
    for days_ago, number in ((3, 2), (2, 4), (1, 6)):
        store_backup(store, _daily(now, days_ago, number))
    policy = RetentionPolicy(daily_days=1, weekly_days=1, wal_days=1)

    plan = plan_expire(store, policy, now)
    held = [i for i in plan.items if i.kind == "postgres" and "locked until" in i.reason]
    assert len(held) == 2 and not plan.deletions, plan.items
    assert all(i.keep and not i.keys for i in held)
    assert apply_expire(store, plan) == 0

    oldest = _daily(now, 3, 2).backup_id
    for info in store.list(f"postgres/base/{oldest}/"):
        full = store.full_key(info.key)
        store.client.put_object_retention(
            Bucket=store.bucket, Key=full, BypassGovernanceRetention=True,
            Retention={"Mode": "GOVERNANCE",
                       "RetainUntilDate": datetime.now(UTC) + timedelta(seconds=1)},
        )  # fmt: skip
    time.sleep(2.5)
    plan = plan_expire(store, policy, now)
    assert [i.name for i in plan.deletions] == [oldest]
    assert apply_expire(store, plan) == 2
    left = {i.key.split("/")[2] for i in store.list("postgres/base/")}
    assert oldest not in left and len(left) == 2


def test_the_lock_covers_the_retention_plan() -> None:
    lock = plan_lock("compliance", RetentionPolicy(daily_days=14, weekly_days=56, wal_days=7,
                                                   redis_days=10, media_days=20), 90)  # fmt: skip
    assert lock.mode == "COMPLIANCE"
    assert lock.days_for("postgres/base/x/backup.json") == 56
    assert lock.days_for("postgres/wal/000000010000000000000001.zst") == 56
    assert lock.days_for("redis/x/dump.rdb.zst") == 10
    assert lock.days_for("media/packs/ab/cd") == 20
    assert lock.days_for("drill-reports/r/report.json") == 90
    assert lock.days_for("locks/postgres-base") is None
    assert lock.days_for("pins/postgres/x") is None
    with pytest.raises(Exception, match="governance or compliance"):
        plan_lock("forever", RetentionPolicy(), 0)


def test_a_pin_puts_a_legal_hold_that_outlives_the_retention(seaweed_s3: LoopbackS3) -> None:
    """`pg pin` under Object Lock holds the backup's objects with no end date (expire keeps
    them whatever their retention says); `pg unpin` lifts the hold."""
    store = _locked_store(seaweed_s3)
    backup = store_backup(store, _daily(datetime.now(UTC), 1, 2))
    env = {**os.environ, **store.environment(), "BACKUP_ENGINE_CONFIG": os.devnull}
    assert env["BACKUP_ENGINE_OBJECT_LOCK"] == "governance"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "backup_engine", "--repo",
                               f"s3://{store.bucket}/p", "pg", *args],
                              capture_output=True, text=True, env=env, timeout=120)  # fmt: skip

    pinned = cli("pin", backup.backup_id, "--reason", "legal hold, ticket 42")
    assert pinned.returncode == 0, pinned.stderr
    assert "2 objects under legal hold" in pinned.stdout
    keys = [i.key for i in store.list(f"postgres/base/{backup.backup_id}/")]
    assert all(store.lock_state(k).legal_hold for k in keys)
    assert all(store.lock_state(k).locked(store.store_now() + timedelta(days=3650)) for k in keys)
    unpinned = cli("unpin", backup.backup_id)
    assert unpinned.returncode == 0 and "legal hold lifted" in unpinned.stdout
    assert not any(store.lock_state(k).legal_hold for k in keys)


def test_usage_shows_what_is_locked(seaweed_s3: LoopbackS3) -> None:
    store = _locked_store(seaweed_s3)
    store.put_bytes("postgres/wal/000000010000000000000001.zst", b"w" * 1000)
    store.put_bytes("locks/postgres-base", b"holder")
    env = {**os.environ, **store.environment(), "BACKUP_ENGINE_CONFIG": os.devnull}
    shown = subprocess.run(
        [sys.executable, "-m", "backup_engine", "--repo", f"s3://{store.bucket}/p", "usage",
         "--json"], capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    kinds = {k["kind"]: k for k in json.loads(shown.stdout)["kinds"]}
    assert kinds["WAL archives"]["locked_bytes"] == 1000
    assert kinds["Other (locks, pins, evidence)"]["locked_bytes"] == 0


def test_check_reports_a_newest_backup_without_its_lock(seaweed_s3: LoopbackS3) -> None:
    from backup_engine.health import CRITICAL, OK, WARNING, lock_finding

    store = _locked_store(seaweed_s3)
    assert lock_finding(store).state == OK  # nothing written yet
    store_backup(store, _daily(datetime.now(UTC), 2, 2))
    assert lock_finding(store).state == OK, lock_finding(store)
    unlocked = S3Storage(store.bucket, "p", replace(store.options, lock=None))  # a writer
    newest = store_backup(unlocked, _daily(datetime.now(UTC), 1, 4))  # left without the setting
    finding = lock_finding(store)
    assert finding.state == CRITICAL and newest.backup_id in finding.message
    longer = replace(LOCK, days=(("postgres/", 30),))  # a plan that now keeps backups longer
    store_backup(store, _daily(datetime.now(UTC), 0, 6))
    assert lock_finding(S3Storage(store.bucket, "p", replace(store.options, lock=longer))
                        ).state == WARNING  # fmt: skip


def test_prune_keeps_a_locked_pack_until_its_lock_has_passed(
    seaweed_s3: LoopbackS3, tmp_path: Path
) -> None:
    """A pack no snapshot uses (here one a crashed backup left, named by no index) stays while
    locked, saying until when; once the lock has passed, a later prune deletes it."""
    store = _locked_store(seaweed_s3, replace(LOCK, days=(("media/", 1),)))
    tree = tmp_path / "up"
    tree.mkdir()
    (tree / "keep.bin").write_bytes(os.urandom(3000))
    kept = take_media_snapshot(store, get_codec("zstd"), tree)
    crashed = PackUploader(store, "zstd", 1, 1)
    crashed.add("f" * 64, b"never indexed")
    (orphan,) = crashed.finish()
    later = datetime.now(UTC) + timedelta(days=400)  # past the grace period

    plan = plan_prune(store, [kept], later, timedelta(days=1))
    (decision,) = [d for d in plan.packs if d.key == orphan.key]
    assert not decision.delete and "locked until" in decision.reason, decision
    assert not plan.deletions and not plan.replaced_indexes

    store.client.put_object_retention(
        Bucket=store.bucket, Key=store.full_key(orphan.key), BypassGovernanceRetention=True,
        Retention={"Mode": "GOVERNANCE",
                   "RetainUntilDate": datetime.now(UTC) + timedelta(seconds=1)},
    )  # fmt: skip
    time.sleep(2.5)
    plan = plan_prune(store, [kept], later, timedelta(days=1))
    assert [d.key for d in plan.deletions] == [orphan.key]
    apply_prune(store, plan, later)
    restore_media(store, kept.backup_id, tmp_path / "out")
    assert (tmp_path / "out" / "keep.bin").read_bytes() == (tree / "keep.bin").read_bytes()
