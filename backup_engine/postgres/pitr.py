"""Planning a point-in-time recovery before anything is restored.

Given a target, pick the backup to start from and prove, from the repository alone, that the
recovery can reach the target: the target lies inside the recoverable window (after the
backup ended, before the newest archived WAL) and no WAL segment on the way is missing. A
target outside the window is refused here, with the window in the message, instead of being
discovered after replay (or worse, recovery quietly stopping at the end of the archive).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from backup_engine.errors import BackupNotFound, IntegrityError, UsageError
from backup_engine.postgres.catalog import LATEST, Catalog, list_base_backups
from backup_engine.postgres.lsn import format_lsn
from backup_engine.postgres.manifest import BaseBackupManifest
from backup_engine.postgres.restore_points import read_restore_point
from backup_engine.postgres.targets import RecoveryTarget
from backup_engine.postgres.wal import WAL_PREFIX
from backup_engine.postgres.walarchive import WalArchive, read_wal_archive
from backup_engine.storage.base import Storage

AUTO = "auto"


class TargetOutOfRange(UsageError):
    """The target is before the chosen backup or beyond the archived WAL."""


class WalGap(IntegrityError):
    """A WAL segment the recovery needs is missing from the archive."""


@dataclass(frozen=True)
class RecoveryPlan:
    backup: BaseBackupManifest
    target: RecoveryTarget
    timeline: int  # the timeline recovery will end on
    needs_wal_until: int  # last LSN whose segment must be in the archive
    window_end_time: datetime | None  # newest archived WAL on that timeline


def _ancestry(archive: WalArchive, timeline: int) -> set[int]:
    return {timeline, *(s.parent for s in archive.history.get(timeline, []))}


def _recovery_timeline(
    archive: WalArchive, backup: BaseBackupManifest, target: RecoveryTarget
) -> int:
    if target.timeline == "current":
        return backup.timeline
    if target.timeline.isdigit():
        return int(target.timeline)
    descendants = [t for t in archive.timelines if backup.timeline in _ancestry(archive, t)]
    return max(descendants, default=backup.timeline)


def _target_lsn(storage: Storage, target: RecoveryTarget) -> int | None:
    if target.kind == "lsn":
        return target.lsn
    if target.kind == "name" and target.name is not None:
        return read_restore_point(storage, target.name).lsn_value
    return None


def _reaches(backup: BaseBackupManifest, target: RecoveryTarget, target_lsn: int | None) -> bool:
    """Can recovery from `backup` stop at `target`? (It must not lie before the backup's end.)"""
    if target.kind == "time":
        assert target.time is not None
        return backup.stop_time <= target.time
    if target_lsn is not None:
        return backup.stop_lsn_value <= target_lsn
    if target.kind == "xid":
        if backup.next_xid is None or target.xid is None:
            return False
        return backup.next_xid <= target.xid
    return True  # immediate, latest


def choose_backup(
    catalog: Catalog[BaseBackupManifest], ref: str, target: RecoveryTarget, target_lsn: int | None
) -> BaseBackupManifest:
    if not catalog.backups:
        raise BackupNotFound("no complete base backup to recover from")
    if ref not in (AUTO, LATEST):
        matches = [b for b in catalog.backups if b.backup_id == ref]
        if not matches:
            raise BackupNotFound(f"no backup {ref!r}", hint="run backup-engine pg list")
        backup = matches[0]
        if not _reaches(backup, target, target_lsn):
            raise TargetOutOfRange(
                f"target {target.describe()} is before backup {backup.backup_id} ended "
                f"({backup.stop_time.isoformat()}, LSN {backup.stop_lsn})",
                hint="restore from an older backup, or let the tool choose with 'auto'",
            )
        return backup
    usable = [b for b in catalog.backups if _reaches(b, target, target_lsn)]
    if not usable:
        first = catalog.backups[0]
        raise TargetOutOfRange(
            f"target {target.describe()} is before the recoverable window, which starts when the "
            f"first backup ended: {first.stop_time.isoformat()} (LSN {first.stop_lsn}, backup "
            f"{first.backup_id})",
            hint="pick a later target",
        )
    return usable[-1]  # the newest backup that reaches the target needs the least WAL replay


def _first_segment_archived_after(
    archive: WalArchive, timeline: int, moment: datetime
) -> int | None:
    """LSN at the start of the first segment archived at or after `moment` on `timeline`'s chain."""
    candidates = []
    for tli in _ancestry(archive, timeline):
        objects = {**archive.partial.get(tli, {}), **archive.segments.get(tli, {})}
        candidates += [n for n, o in objects.items() if o.modified and o.modified >= moment]
    return min(candidates) * archive.segment_size if candidates else None


def plan_recovery(storage: Storage, ref: str, target: RecoveryTarget) -> RecoveryPlan:
    catalog = list_base_backups(storage)
    target_lsn = _target_lsn(storage, target)
    backup = choose_backup(catalog, ref, target, target_lsn)
    archive = read_wal_archive(storage, backup.wal_segment_size)
    timeline = _recovery_timeline(archive, backup, target)
    end_lsn = archive.end_lsn(timeline)
    window_end = archive.latest_archived_at(storage, timeline)
    stop = backup.stop_lsn_value
    if target.kind == "immediate":
        return RecoveryPlan(backup, target, backup.timeline, stop, window_end)
    if end_lsn is None or end_lsn <= stop:
        raise TargetOutOfRange(
            f"no WAL archived after backup {backup.backup_id} (LSN {backup.stop_lsn}) "
            f"under {storage.url}/{WAL_PREFIX}",
            hint="is archive_command set to backup-engine pg wal-push? "
            "Use --target immediate to restore the backup alone",
        )
    window = f"the archive ends at LSN {format_lsn(end_lsn)}" + (
        f", archived {window_end.isoformat()}" if window_end else ""
    )
    needs = end_lsn - 1
    if target.kind == "time":
        assert target.time is not None
        if window_end is not None and target.time > window_end:
            raise TargetOutOfRange(
                f"target time {target.time.isoformat()} is after the newest archived WAL: {window}",
                hint="pick an earlier target, or --target latest",
            )
        after = _first_segment_archived_after(archive, timeline, target.time)
        needs = end_lsn - 1 if after is None else after
    elif target_lsn is not None:
        if target_lsn >= end_lsn:
            raise TargetOutOfRange(
                f"target {target.describe()} (LSN {format_lsn(target_lsn)}) is beyond the archived "
                f"WAL: {window}",
                hint="wait for the segment to be archived, or pick an earlier target",
            )
        needs = target_lsn
    # The backup's own pg_wal holds every segment up to its stop segment (fetched complete:
    # the backup ends with a segment switch); the archive must hold the rest.
    after_backup = (stop // backup.wal_segment_size + 1) * backup.wal_segment_size
    missing = archive.missing(timeline, after_backup, needs) if needs >= after_backup else []
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        shown = ", ".join(missing[:3]) + more
        raise WalGap(
            f"the WAL archive has a gap: {shown} missing, needed to recover from backup "
            f"{backup.backup_id} to {target.describe()}",
            hint="choose an earlier target or a newer backup; nothing was restored",
        )
    return RecoveryPlan(backup, target, timeline, needs, window_end)


@dataclass(frozen=True)
class RecoverableWindow:
    timeline: int
    start_time: datetime  # the earliest backup on this timeline's history ended
    start_backup: str
    end_time: datetime | None  # the newest WAL of this timeline was archived
    end_lsn: int | None


def recoverable_windows(
    storage: Storage, catalog: Catalog[BaseBackupManifest]
) -> list[RecoverableWindow]:
    """Per timeline in the archive: from the earliest usable backup to the newest archived WAL."""
    if not catalog.backups:
        return []
    archive = read_wal_archive(storage, catalog.backups[-1].wal_segment_size)
    windows = []
    for timeline in archive.timelines:
        usable = [b for b in catalog.backups if b.timeline in _ancestry(archive, timeline)]
        if usable:
            first = usable[0]
            windows.append(
                RecoverableWindow(
                    timeline,
                    first.stop_time,
                    first.backup_id,
                    archive.latest_archived_at(storage, timeline),
                    archive.end_lsn(timeline),
                )
            )
    return windows
