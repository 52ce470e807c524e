"""Retention by count (`[retention] full_keep`): the newest N full backups and the incrementals
built on them, the PITR window whole, the newest backup and pins kept, whatever the sequence of
fulls and incrementals (hypothesis)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from backup_engine.expire import apply_expire, plan_expire
from backup_engine.postgres.catalog import BASE_BACKUPS
from backup_engine.postgres.manifest import BaseBackupManifest
from backup_engine.retention import RetentionPolicy, base_backup_decisions, pitr_anchor
from backup_engine.storage import LocalStorage
from tests.test_manifest import store_backup
from tests.test_retention import synthetic_backup


def _history(kinds: list[bool]) -> list[BaseBackupManifest]:
    """One backup a day; True: a full, False: an incremental on the day before."""
    backups: list[BaseBackupManifest] = []
    for day, full in enumerate(kinds):
        backup = synthetic_backup(day, day * 2 + 2)
        if not full and backups:
            backup = replace(backup, backup_type="incr", parent_id=backups[-1].backup_id)
        backups.append(backup)
    return backups


def _root(backup: BaseBackupManifest, by_id: dict[str, BaseBackupManifest]) -> str:
    while backup.parent_id is not None:
        backup = by_id[backup.parent_id]
    return backup.backup_id


@settings(max_examples=200, deadline=None)
@given(
    kinds=st.lists(st.booleans(), min_size=1, max_size=40),
    keep=st.integers(1, 6),
    wal_days=st.integers(1, 20),
)
def test_the_newest_fulls_and_their_chains_are_kept(
    kinds: list[bool], keep: int, wal_days: int
) -> None:
    backups = _history(kinds)
    by_id = {b.backup_id: b for b in backups}
    now = backups[-1].stop_time + timedelta(hours=1)
    policy = RetentionPolicy(daily_days=1, weekly_days=1, wal_days=wal_days, full_keep=keep)
    kept = {d.backup_id for d in base_backup_decisions(backups, policy, now) if d.keep}

    fulls = [b.backup_id for b in backups if b.parent_id is None]
    wanted = {b.backup_id for b in backups if _root(b, by_id) in fulls[-keep:]}
    anchor = pitr_anchor(backups, now - timedelta(days=wal_days))
    wanted |= {backups[-1].backup_id, anchor.backup_id}
    for backup_id in list(wanted):  # a kept incremental keeps its parents
        backup = by_id[backup_id]
        while backup.parent_id is not None:
            wanted.add(backup.parent_id)
            backup = by_id[backup.parent_id]
    assert kept == wanted


def test_count_overrides_the_days_and_expire_deletes_the_rest(tmp_path: Path) -> None:
    """Ten daily fulls, full_keep = 3, WAL 4 days: the newest three and the one the PITR window
    starts from (day 5) stay, though the daily rule (30 days) would have kept all ten."""
    repo = LocalStorage(tmp_path)
    backups = _history([True] * 10)
    for backup in backups:
        store_backup(repo, backup)
    now = backups[-1].stop_time + timedelta(hours=1)
    policy = RetentionPolicy(daily_days=30, wal_days=4, full_keep=3)
    plan = plan_expire(repo, policy, now)
    reasons = {i.name: i.reason for i in plan.items if i.kind == "postgres"}
    assert reasons[backups[-2].backup_id] == "full backup, newest 2 of 10 (kept: the newest 3)"
    assert reasons[backups[0].backup_id] == "full backup, newest 10 of 10: past the newest 3"
    apply_expire(repo, plan)
    left = [b.backup_id for b in BASE_BACKUPS.list(repo).backups]
    assert left == [b.backup_id for b in (backups[5], *backups[7:])]  # the anchor, then 3
    assert "PITR window" in reasons[backups[5].backup_id]
    assert RetentionPolicy().full_keep == 0  # by days unless asked
    by_days = base_backup_decisions(backups, replace(policy, full_keep=0), now)
    assert all(d.keep for d in by_days)
