"""Choosing the backup for a target and refusing impossible recoveries, from the repository
alone (synthetic manifests and WAL objects; no server needed)."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backup_engine.errors import BackupNotFound, UsageError
from backup_engine.postgres.lsn import format_lsn
from backup_engine.postgres.manifest import manifest_key
from backup_engine.postgres.pitr import TargetOutOfRange, WalGap, plan_recovery
from backup_engine.postgres.targets import RecoveryTarget
from backup_engine.postgres.wal import META_ARCHIVED_AT, WAL_PREFIX
from backup_engine.postgres.walarchive import parse_history, read_wal_archive, segment_name
from backup_engine.storage import LocalStorage
from tests.test_manifest import sample_manifest

SEG = 16 * 1024 * 1024
T0 = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)


def add_backup(
    repo: LocalStorage,
    backup_id: str,
    stop_segment: int,
    stop_time: datetime,
    *,
    timeline: int = 1,
    next_xid: int | None = None,
) -> None:
    manifest = replace(
        sample_manifest(),
        backup_id=backup_id,
        start_time=stop_time - timedelta(seconds=5),
        stop_time=stop_time,
        start_lsn=format_lsn(stop_segment * SEG + 0x28),
        stop_lsn=format_lsn(stop_segment * SEG + 0x100),
        timeline=timeline,
        next_xid=next_xid,
    )
    repo.put_bytes(manifest_key(backup_id), manifest.to_json().encode())


def add_wal(repo: LocalStorage, timeline: int, number: int, archived: datetime) -> None:
    key = f"{WAL_PREFIX}{segment_name(timeline, number, SEG)}"
    repo.put_bytes(key, b"wal", metadata={META_ARCHIVED_AT: archived.isoformat()})
    stamp = archived.timestamp()
    os.utime(repo.root / key, (stamp, stamp))  # as if written then


@pytest.fixture
def repo(tmp_path: Path) -> LocalStorage:
    """Two backups, ending in segment 2 at T0 and in segment 6 at T0 + 10 min; WAL segments
    2..9, segment n archived at T0 + (n - 2) * 2.5 min + 1 s."""
    store = LocalStorage(tmp_path)
    add_backup(store, "20261125T020000Z", 2, T0, next_xid=1000)
    add_backup(store, "20261125T021000Z", 6, T0 + timedelta(minutes=10), next_xid=2000)
    for number in range(2, 10):
        add_wal(store, 1, number, archived_at(number))
    return store


def archived_at(number: int) -> datetime:
    return T0 + timedelta(minutes=(number - 2) * 2.5, seconds=1)


def at(minutes: float) -> RecoveryTarget:
    return RecoveryTarget("time", time=T0 + timedelta(minutes=minutes))


def test_time_target_uses_the_newest_backup_that_ended_before_it(repo: LocalStorage) -> None:
    assert plan_recovery(repo, "auto", at(5)).backup.backup_id == "20261125T020000Z"
    assert plan_recovery(repo, "auto", at(10.5)).backup.backup_id == "20261125T021000Z"


def test_lsn_target_uses_the_newest_backup_ending_before_it(repo: LocalStorage) -> None:
    early = RecoveryTarget("lsn", lsn=4 * SEG)
    late = RecoveryTarget("lsn", lsn=8 * SEG)
    assert plan_recovery(repo, "auto", early).backup.backup_id == "20261125T020000Z"
    assert plan_recovery(repo, "auto", late).backup.backup_id == "20261125T021000Z"


def test_xid_target_uses_the_recorded_next_xid(repo: LocalStorage) -> None:
    assert plan_recovery(repo, "auto", RecoveryTarget("xid", xid=1500)).backup.backup_id == (
        "20261125T020000Z"
    )
    assert plan_recovery(repo, "auto", RecoveryTarget("xid", xid=2500)).backup.backup_id == (
        "20261125T021000Z"
    )
    with pytest.raises(TargetOutOfRange, match="before the recoverable window"):
        plan_recovery(repo, "auto", RecoveryTarget("xid", xid=10))


def test_restore_point_target_is_looked_up_in_the_repository(repo: LocalStorage) -> None:
    record = {
        "name": "pre-upgrade",
        "lsn": format_lsn(7 * SEG + 5),
        "time": T0.isoformat(),
        "timeline": 1,
    }
    repo.put_bytes("postgres/restore-points/pre-upgrade.json", json.dumps(record).encode())
    plan = plan_recovery(repo, "auto", RecoveryTarget("name", name="pre-upgrade"))
    assert plan.backup.backup_id == "20261125T021000Z"
    with pytest.raises(UsageError, match="not recorded"):
        plan_recovery(repo, "auto", RecoveryTarget("name", name="never-made"))


def test_latest_and_immediate_use_the_newest_backup(repo: LocalStorage) -> None:
    assert plan_recovery(repo, "auto", RecoveryTarget("latest")).backup.backup_id == (
        "20261125T021000Z"
    )
    plan = plan_recovery(repo, "auto", RecoveryTarget("immediate"))
    assert plan.backup.backup_id == "20261125T021000Z"


def test_a_target_before_the_first_backup_is_refused_with_the_window(repo: LocalStorage) -> None:
    with pytest.raises(
        TargetOutOfRange, match=r"starts when the first backup ended: 2026-11-25T02:00:00"
    ):
        plan_recovery(repo, "auto", at(-30))


def test_a_target_after_the_archive_is_refused_with_the_window(repo: LocalStorage) -> None:
    with pytest.raises(TargetOutOfRange, match="after the newest archived WAL"):
        plan_recovery(repo, "auto", at(60))
    with pytest.raises(TargetOutOfRange, match="beyond the archived WAL"):
        plan_recovery(repo, "auto", RecoveryTarget("lsn", lsn=11 * SEG))


def test_an_explicit_backup_that_ends_after_the_target_is_refused(repo: LocalStorage) -> None:
    with pytest.raises(TargetOutOfRange, match="before backup 20261125T021000Z ended"):
        plan_recovery(repo, "20261125T021000Z", at(5))
    assert plan_recovery(repo, "20261125T020000Z", at(12)).backup.backup_id == "20261125T020000Z"
    with pytest.raises(BackupNotFound):
        plan_recovery(repo, "20200101T000000Z", at(12))


def test_a_missing_segment_on_the_way_is_a_gap(repo: LocalStorage) -> None:
    repo.delete(f"{WAL_PREFIX}{segment_name(1, 4, SEG)}")
    with pytest.raises(WalGap, match=segment_name(1, 4, SEG)):
        plan_recovery(repo, "auto", at(5))
    # A target past the gap but reachable from the newer backup needs none of it.
    assert plan_recovery(repo, "auto", at(10.5)).backup.backup_id == "20261125T021000Z"


def test_a_gap_after_a_time_target_does_not_matter(repo: LocalStorage) -> None:
    repo.delete(f"{WAL_PREFIX}{segment_name(1, 9, SEG)}")
    add_wal(repo, 1, 10, archived_at(10))
    assert plan_recovery(repo, "auto", at(10.5)).needs_wal_until < 9 * SEG
    with pytest.raises(WalGap):
        plan_recovery(repo, "auto", RecoveryTarget("latest"))


def test_no_archived_wal_means_only_the_backup_itself(tmp_path: Path) -> None:
    repo = LocalStorage(tmp_path)
    add_backup(repo, "20261125T020000Z", 2, T0)
    with pytest.raises(TargetOutOfRange, match="no WAL archived after backup"):
        plan_recovery(repo, "auto", RecoveryTarget("latest"))
    assert plan_recovery(repo, "auto", RecoveryTarget("immediate")).backup.backup_id


def test_timelines_are_followed_through_their_history(tmp_path: Path) -> None:
    repo = LocalStorage(tmp_path)
    add_backup(repo, "20261125T020000Z", 2, T0)
    for number in (2, 3):
        add_wal(repo, 1, number, T0 + timedelta(minutes=number))
    for number in (4, 5, 6):  # timeline 2 branched off at segment 4
        add_wal(repo, 2, number, T0 + timedelta(minutes=number))
    repo.put_bytes(
        f"{WAL_PREFIX}00000002.history", f"1\t{format_lsn(4 * SEG + 0x80)}\tpitr\n".encode()
    )
    plan = plan_recovery(repo, "auto", RecoveryTarget("latest"))
    assert plan.timeline == 2
    archive = read_wal_archive(repo, SEG)
    assert archive.missing(2, 2 * SEG, 6 * SEG) == []
    repo.delete(f"{WAL_PREFIX}{segment_name(1, 3, SEG)}")
    with pytest.raises(WalGap, match=segment_name(1, 3, SEG)):
        plan_recovery(repo, "auto", RecoveryTarget("latest"))


def test_history_files_parse() -> None:
    text = "1\t0/3000000\tno recovery target specified\n\n2\t0/5000098\tbefore 2026-11-25\n"
    switches = parse_history(text)
    assert [(s.parent, s.switch_lsn) for s in switches] == [(1, 0x3000000), (2, 0x5000098)]
