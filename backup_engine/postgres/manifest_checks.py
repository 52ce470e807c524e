"""Is a base backup's manifest consistent enough to reason from? (expire deletes because of it)

Anyone who can write to the bucket can write a `backup.json`. A copied manifest with a new id,
times a week back and `start_lsn` FF/0 once became the PITR anchor, and expire deleted the WAL
the real window needed. Before expire uses a manifest it checks that the manifest agrees with
itself (LSNs against the WAL file names and timeline, times in order), with the repository
(every object it lists is there, under its own prefix, with the recorded size), and with the
other backups (on one timeline, a later backup never starts at a lower LSN).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta

from backup_engine.postgres.chain import link_problem
from backup_engine.postgres.lsn import wal_file_name
from backup_engine.postgres.manifest import BaseBackupManifest, base_backup_prefix
from backup_engine.snapshots import id_order
from backup_engine.storage.base import ObjectInfo

CLOCK_SKEW = timedelta(days=1)
SEGMENT_SIZES = {1 << n for n in range(20, 31)}  # 1 MB to 1 GB, as initdb allows


def _own_problem(
    backup: BaseBackupManifest, objects: dict[str, ObjectInfo], now: datetime
) -> str | None:
    try:
        start, stop = backup.start_lsn_value, backup.stop_lsn_value
    except ValueError as exc:
        return f"unreadable LSN: {exc}"
    size = backup.wal_segment_size
    if size not in SEGMENT_SIZES:
        return f"WAL segment size {size} is not one PostgreSQL uses"
    if not 1 <= backup.timeline <= 0xFFFFFFFF:
        return f"timeline {backup.timeline} is out of range"
    if start > stop:
        return f"starts at {backup.start_lsn}, after it stops ({backup.stop_lsn})"
    if backup.start_wal_file != wal_file_name(backup.timeline, start, size):
        return f"start LSN {backup.start_lsn} is not in its start WAL file {backup.start_wal_file}"
    if backup.stop_wal_file != wal_file_name(backup.timeline, stop, size, previous=True):
        return f"stop LSN {backup.stop_lsn} is not in its stop WAL file {backup.stop_wal_file}"
    if backup.start_time > backup.stop_time:
        return "starts after it stops"
    if backup.stop_time > now + CLOCK_SKEW:
        return f"stops in the future ({backup.stop_time.isoformat()})"
    prefix = base_backup_prefix(backup.backup_id)
    for stored in backup.files:
        if not stored.key.startswith(prefix):
            return f"lists {stored.key}, which belongs to another backup"
        found = objects.get(stored.key)
        if found is None:
            return f"lists {stored.key}, which is not in the repository"
        if found.size != stored.size:
            return f"lists {stored.key} with {stored.size} bytes, the repository has {found.size}"
    return None


def manifest_problems(
    backups: Sequence[BaseBackupManifest], listing: Sequence[ObjectInfo], now: datetime
) -> list[str]:
    """One line per inconsistent manifest (empty: all can be reasoned from)."""
    objects = {info.key: info for info in listing}
    problems = []
    for backup in backups:
        problem = _own_problem(backup, objects, now)
        if problem is not None:
            problems.append(f"base backup {backup.backup_id}: {problem}")
    if problems:
        return problems
    problems += _chain_problems(backups)
    by_timeline: dict[int, list[BaseBackupManifest]] = {}
    for backup in backups:
        by_timeline.setdefault(backup.timeline, []).append(backup)
    for timeline, ordered in by_timeline.items():
        ordered.sort(key=lambda b: (b.stop_time, id_order(b.backup_id)))
        for earlier, later in itertools.pairwise(ordered):
            if later.start_lsn_value < earlier.stop_lsn_value:
                problems.append(
                    f"base backups {earlier.backup_id} and {later.backup_id} on timeline "
                    f"{timeline}: the later one starts at {later.start_lsn}, before the earlier "
                    f"one stopped ({earlier.stop_lsn}); one of the manifests is not genuine"
                )
    return problems


def _chain_problems(backups: Sequence[BaseBackupManifest]) -> list[str]:
    """An incremental whose parent is gone or is not its parent: retention would keep, or
    anchor the PITR window on, a backup that cannot be restored."""
    by_id = {b.backup_id: b for b in backups}
    problems = []
    for backup in backups:
        if backup.parent_id is None:
            continue
        parent = by_id.get(backup.parent_id)
        if parent is None:
            problems.append(
                f"incremental base backup {backup.backup_id} needs {backup.parent_id}, which "
                f"is not in the repository (delete it: backup-engine pg delete {backup.backup_id})"
            )
            continue
        problem = link_problem(parent, backup)
        if problem is not None:
            problems.append(f"incremental base backup {backup.backup_id}'s parent {problem}")
    return problems
