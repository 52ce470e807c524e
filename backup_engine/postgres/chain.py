"""Incremental backups (PostgreSQL 17 and later): chains of backups.

An incremental BASE_BACKUP, after UPLOAD_MANIFEST of an earlier backup's `backup_manifest`,
stores only the blocks changed since that backup (the server tracks changes with
`summarize_wal = on`). Such a
backup restores only together with every backup before it, down to a full one:
`pg_combinebackup FULL INCR1 ... INCRn -o PGDATA` writes the synthetic full backup.

Each incremental's `backup.json` names its parent. The chain is read from the repository, so it
is untrusted input: every link must exist and be complete, belong to the same server (system
identifier) and major version, and end before the next one starts; a loop, a missing link or a
chain longer than MAX_CHAIN is refused before anything is written. pg_combinebackup then checks
again, from PostgreSQL's own manifests, that each backup is the next one's parent.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from backup_engine.errors import IntegrityError, ObjectNotFound, UsageError
from backup_engine.postgres.catalog import BASE_BACKUPS
from backup_engine.postgres.manifest import FULL, INCREMENTAL, BaseBackupManifest, is_backup_id
from backup_engine.retention import WEEKDAYS
from backup_engine.storage import Storage

MAX_CHAIN = 64  # a full and 63 incrementals: two months of dailies is already a long chain
MIN_MAJOR = 17


class BrokenChain(IntegrityError):
    """An incremental backup whose chain cannot be followed to a full backup."""


def link_problem(parent: BaseBackupManifest, child: BaseBackupManifest) -> str | None:
    """Why `parent` cannot be `child`'s previous backup, or None."""
    if parent.system_identifier != child.system_identifier:
        return (
            f"{parent.backup_id} is of another server (system {parent.system_identifier}, "
            f"not {child.system_identifier})"
        )
    if parent.pg_major != child.pg_major:
        return f"{parent.backup_id} is of PostgreSQL {parent.pg_major}, not {child.pg_major}"
    if parent.stop_lsn_value > child.start_lsn_value:
        return f"{parent.backup_id} stops at {parent.stop_lsn}, after {child.start_lsn}"
    return None


def backup_chain(storage: Storage, backup: BaseBackupManifest) -> tuple[BaseBackupManifest, ...]:
    """`backup` and the backups it needs, the full one first (a full backup alone)."""
    chain = [backup]
    while chain[-1].backup_type == INCREMENTAL:
        child = chain[-1]
        parent_id = child.parent_id or ""
        if not is_backup_id(parent_id):
            raise BrokenChain(f"incremental backup {child.backup_id} names no valid parent")
        if parent_id in {b.backup_id for b in chain}:
            raise BrokenChain(f"the chain of backup {backup.backup_id} loops at {parent_id}")
        if len(chain) >= MAX_CHAIN:
            raise BrokenChain(
                f"the chain of backup {backup.backup_id} is longer than {MAX_CHAIN} backups"
            )
        try:
            parent = BASE_BACKUPS.read(storage, parent_id)
        except ObjectNotFound:
            raise BrokenChain(
                f"incremental backup {child.backup_id} needs {parent_id}, which is not in the "
                "repository",
                hint="restore another backup; a chain without its parent cannot be restored",
            ) from None
        problem = link_problem(parent, child)
        if problem is not None:
            raise BrokenChain(f"incremental backup {child.backup_id}'s parent {problem}")
        chain.append(parent)
    return tuple(reversed(chain))


def choose_type(requested: str, full_on: str, now: datetime) -> str:
    """The type of the backup to take: `incr` becomes full on the `full_on` weekday."""
    if requested not in (FULL, INCREMENTAL):
        raise UsageError(f"backup type {requested!r}", hint="use full or incr")
    if requested == INCREMENTAL and full_on and WEEKDAYS[now.weekday()] == full_on:
        return FULL
    return requested


def pick_parent(
    backups: Sequence[BaseBackupManifest], major: int, system_identifier: str | None
) -> BaseBackupManifest | None:
    """The newest complete backup of this server and version: the next incremental's parent."""
    for backup in reversed(backups):
        if backup.pg_major != major:
            continue
        if system_identifier is not None and backup.system_identifier != system_identifier:
            continue
        return backup
    return None
