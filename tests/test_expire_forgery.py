"""expire and a forged or unreadable repository: it deletes nothing it cannot justify.

Anyone who can write to the bucket (the backup role can, by design) can add a manifest. expire
must neither take a forged manifest as its PITR anchor nor count a manifest it cannot read as an
"incomplete backup" to clean up.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backup_engine.expire import ExpireRefused, apply_expire, plan_expire
from backup_engine.postgres.lsn import format_lsn
from backup_engine.postgres.manifest import BaseBackupManifest, manifest_key
from backup_engine.postgres.timelines import segment_name
from backup_engine.postgres.wal import WAL_PREFIX
from backup_engine.retention import RetentionPolicy
from backup_engine.storage import LocalStorage
from backup_engine.storage.encrypted import EncryptedStorage
from tests.test_manifest import genuine, sample_manifest, store_backup

SEG = 16 * 1024 * 1024
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
POLICY = RetentionPolicy(daily_days=3, weekly_days=3, wal_days=2)


def daily(day: int) -> BaseBackupManifest:
    """The backup of day `day` (0-9, ending 10 - day days before NOW), four segments a day."""
    stop = NOW - timedelta(days=10 - day)
    return replace(
        sample_manifest(), backup_id=stop.strftime("%Y%m%dT%H%M%SZ"),
        start_time=stop - timedelta(seconds=5), stop_time=stop,
        start_lsn=format_lsn((day * 4 + 2) * SEG + 0x28),
        stop_lsn=format_lsn((day * 4 + 2) * SEG + 0x100),
    )  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path) -> LocalStorage:
    """Ten daily backups (days 0-9 before NOW), four segments of WAL a day, all archived at
    their simulated times."""
    store = LocalStorage(tmp_path)
    for day in range(10):
        store_backup(store, daily(day))
    for number in range(2, 42):
        archived = NOW - timedelta(days=10) + timedelta(hours=6 * (number - 2))
        key = f"{WAL_PREFIX}{segment_name(1, number, SEG)}.zst"
        store.put_bytes(key, b"w")
        os.utime(store.root / key, (archived.timestamp(), archived.timestamp()))
    return store


def _everything(repo: LocalStorage) -> list[str]:
    return sorted(info.key for info in repo.list())


def test_a_genuine_repository_is_expired(repo: LocalStorage) -> None:
    plan = plan_expire(repo, POLICY, NOW)
    assert [i.kind for i in plan.deletions].count("postgres") == 7  # 3 days kept of 10
    assert any(i.kind == "wal" for i in plan.deletions)


def test_a_copied_manifest_with_a_forged_anchor_makes_expire_refuse(repo: LocalStorage) -> None:
    """The reproduced attack: backup.json copied under a new id, times 8 days back, start LSN
    FF/0. It used to become the PITR anchor, and expire deleted WAL the window needed."""
    newest = sorted(i.key for i in repo.list("postgres/base/") if i.key.endswith("backup.json"))
    data = json.loads(repo.get_bytes(newest[-1]))
    stop = NOW - timedelta(days=8)
    data.update(
        backup_id=stop.strftime("%Y%m%dT%H%M%SZ") + "-9",
        start_lsn="FF/0",
        start_time=(stop - timedelta(seconds=5)).isoformat(),
        stop_time=stop.isoformat(),
    )
    forged = manifest_key(data["backup_id"])
    repo.put_bytes(forged, json.dumps(data).encode())
    before = _everything(repo)
    with pytest.raises(ExpireRefused, match="deleted nothing") as refused:
        plan_expire(repo, POLICY, NOW)
    assert refused.value.exit_code == 4 and data["backup_id"] in str(refused.value)
    assert _everything(repo) == before


def test_a_forged_manifest_that_hangs_together_still_cannot_move_the_window(
    repo: LocalStorage,
) -> None:
    """Consistent WAL file names, its own copied objects, the newest by time: the LSN order
    against the genuine backups, or the end of the archive, gives it away."""
    stop = NOW - timedelta(days=2, hours=12)
    forged = genuine(replace(
        sample_manifest(), backup_id=stop.strftime("%Y%m%dT%H%M%SZ"),
        start_time=stop - timedelta(seconds=5), stop_time=stop,
        start_lsn="FF/28", stop_lsn="FF/100",
    ))  # fmt: skip
    store_backup(repo, forged)
    before = _everything(repo)
    with pytest.raises(ExpireRefused, match="not genuine"):
        plan_expire(repo, POLICY, NOW)
    assert _everything(repo) == before


def test_a_lone_forged_anchor_beyond_the_archive_is_refused(tmp_path: Path) -> None:
    repo = LocalStorage(tmp_path)
    stop = NOW - timedelta(days=8)
    store_backup(repo, replace(
        sample_manifest(), backup_id=stop.strftime("%Y%m%dT%H%M%SZ"),
        start_time=stop - timedelta(seconds=5), stop_time=stop,
        start_lsn="FF/28", stop_lsn="FF/100",
    ))  # fmt: skip
    for number in range(2, 6):
        key = f"{WAL_PREFIX}{segment_name(1, number, SEG)}.zst"
        repo.put_bytes(key, b"w")
        old = (NOW - timedelta(days=9)).timestamp()
        os.utime(repo.root / key, (old, old))
    with pytest.raises(ExpireRefused, match="after everything archived"):
        plan_expire(repo, POLICY, NOW)


@pytest.mark.parametrize(
    "damage",
    [
        b"{not json",
        json.dumps({"kind": "postgres-base", "format_version": 99}).encode(),
        b"",
    ],
)
def test_an_unreadable_manifest_is_never_an_incomplete_backup_to_delete(
    repo: LocalStorage, damage: bytes
) -> None:
    victim = sorted(i.key for i in repo.list("postgres/base/") if i.key.endswith("backup.json"))[0]
    repo.delete(victim)
    repo.put_bytes(victim, damage)
    before = _everything(repo)
    with pytest.raises(ExpireRefused, match="cannot be read"):
        plan_expire(repo, POLICY, NOW + timedelta(days=30))
    assert _everything(repo) == before


def test_the_wrong_encryption_setting_deletes_nothing(repo: LocalStorage) -> None:
    """With encryption switched on by mistake every manifest is unreadable: it once planned to
    delete every backup as incomplete."""
    flipped = EncryptedStorage(repo, b"k" * 32)
    before = _everything(repo)
    with pytest.raises(ExpireRefused, match="is not encrypted by this tool"):
        plan_expire(flipped, POLICY, NOW + timedelta(days=30))
    assert _everything(repo) == before
    encrypted = EncryptedStorage(repo, b"k" * 32)
    store_backup(encrypted, replace(sample_manifest(), backup_id="20261128T000000Z",
                                    start_lsn="F/28", stop_lsn="F/100"))  # fmt: skip
    with pytest.raises(ExpireRefused, match="cannot be read"):
        plan_expire(repo, POLICY, NOW + timedelta(days=30))  # the key switched off
    assert len(_everything(repo)) == len(before) + 2


def test_wal_archived_inside_the_window_is_never_deleted(repo: LocalStorage) -> None:
    """Whatever the manifests say, a segment the store received within wal_days stays."""
    plan = plan_expire(repo, POLICY, NOW)
    apply_expire(repo, plan)
    recent = NOW - timedelta(days=POLICY.wal_days)
    kept_recent = [
        i for i in repo.list(WAL_PREFIX) if i.modified is not None and i.modified >= recent
    ]
    first = NOW - timedelta(days=10)
    archived_recently = [n for n in range(2, 42) if first + timedelta(hours=6 * (n - 2)) >= recent]
    assert len(kept_recent) == len(archived_recently)


def test_an_encrypted_repository_is_expired_with_exact_sizes(tmp_path: Path) -> None:
    repo = EncryptedStorage(LocalStorage(tmp_path), b"k" * 32)
    for day in range(5):
        store_backup(repo, daily(day))
    plan = plan_expire(repo, POLICY, NOW)
    assert [i.kind for i in plan.deletions].count("postgres") == 4  # the newest is kept
