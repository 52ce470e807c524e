"""Planning a recovery before anything is restored.

Given a target, pick the timeline and the backup to start from, and prove from the repository
alone that recovery reaches exactly that target: the target lies inside the recoverable window,
no WAL segment on the way is missing, and the target means one thing only. The timeline is
always decided here and written explicitly into the restored configuration, so PostgreSQL never
picks one on its own ("latest" in PostgreSQL means "the highest-numbered history file", which
after a test restore archived into the same repository is the wrong one).

A target is *ambiguous* when two timelines both reach it and their histories differ before it:
an LSN past the point where they branched, a time after the last moment known to precede the
branch, a transaction id that may have been assigned on both. Such a target is refused, naming
the timelines and their branch points, until `--target-timeline` picks one. "latest" is
ambiguous when two timelines were archiving at the same time (neither stopped before the other
was born). A timeline whose segments are archived without its history file is a gap: nothing is
planned past it until the operator names a timeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from backup_engine.errors import BackupNotFound, IntegrityError, UsageError
from backup_engine.postgres.catalog import LATEST, Catalog, list_base_backups, resolve_backup
from backup_engine.postgres.lsn import format_lsn
from backup_engine.postgres.manifest import BaseBackupManifest
from backup_engine.postgres.restore_points import read_restore_point
from backup_engine.postgres.targets import RecoveryTarget
from backup_engine.postgres.timelines import NEVER, TimelineTree, read_timeline_tree
from backup_engine.postgres.wal import WAL_PREFIX
from backup_engine.storage.base import Storage

AUTO = "auto"


class TargetOutOfRange(UsageError):
    """The target is before the chosen backup or beyond the archived WAL."""


class NoWalAfterBackup(TargetOutOfRange):
    """The archive holds no WAL past the backup: only the backup itself can be restored."""


class AmbiguousTarget(UsageError):
    """The target exists on more than one timeline's history, with different data."""


class WalGap(IntegrityError):
    """A WAL segment (or a timeline history file) the recovery needs is missing."""


@dataclass(frozen=True)
class RecoveryPlan:
    backup: BaseBackupManifest
    target: RecoveryTarget
    timeline: int  # the timeline recovery follows
    needs_wal_until: int  # last LSN whose segment must be in the archive
    window_end_time: datetime | None  # newest archived WAL on that timeline
    why: str = ""  # how the timeline was chosen, for the restore's output

    @property
    def timeline_setting(self) -> str:
        """recovery_target_timeline: 'current' for the backup's own timeline (PostgreSQL
        refuses a number without a history file, which the first timeline never has)."""
        return "current" if self.timeline == self.backup.timeline else str(self.timeline)


@dataclass(frozen=True)
class TargetPoint:
    lsn: int | None = None
    timeline: int | None = None  # known for restore points


def _target_point(storage: Storage, target: RecoveryTarget) -> TargetPoint:
    if target.kind == "lsn":
        return TargetPoint(lsn=target.lsn)
    if target.kind == "name" and target.name is not None:
        point = read_restore_point(storage, target.name)
        return TargetPoint(lsn=point.lsn_value, timeline=point.timeline)
    return TargetPoint()


def _reaches(backup: BaseBackupManifest, target: RecoveryTarget, point: TargetPoint) -> bool:
    """Can recovery from `backup` stop at `target`? (It must not lie before the backup's end.)"""
    if target.kind == "time":
        assert target.time is not None
        return backup.stop_time <= target.time
    if point.lsn is not None:
        return backup.stop_lsn_value <= point.lsn
    if target.kind == "xid":
        if backup.next_xid is None or target.xid is None:
            return False
        return backup.next_xid <= target.xid
    return True  # immediate, latest


def _on_history(tree: TimelineTree, timeline: int, backup: BaseBackupManifest) -> bool:
    return tree.on_history(timeline, backup.timeline, backup.start_lsn_value, backup.stop_lsn_value)


# --- which timeline -------------------------------------------------------------------------


def _lower_bounds(
    tree: TimelineTree, backups: Sequence[BaseBackupManifest], on: int, divergence: int
) -> tuple[datetime, int]:
    """What is known to precede `divergence` on `on`'s history: the latest time and the
    highest next-xid recorded at the start of a backup that started before it. Every record
    after a backup's start LSN was written after its recorded start time."""
    moment, xid = NEVER, 0
    for backup in backups:
        start = backup.start_lsn_value
        if start < divergence and tree.timeline_at(start, on) == backup.timeline:
            moment = max(moment, backup.start_time)
            if backup.start_next_xid is not None:
                xid = max(xid, backup.start_next_xid)
    return moment, xid


def _disagree(
    tree: TimelineTree,
    backups: Sequence[BaseBackupManifest],
    one: int,
    other: int,
    target: RecoveryTarget,
    point: TargetPoint,
) -> int | None:
    """The LSN where the two histories split, if the target may mean different data on them."""
    split = tree.divergence(one, other)
    if split is None:
        return None
    for timeline in (one, other):
        end = tree.end_lsn(timeline)
        if end is None or end <= split:
            return None  # that history holds nothing past the split: they agree up to its end
    if target.kind == "lsn":
        assert point.lsn is not None
        return split if point.lsn >= split else None
    moment, xid = _lower_bounds(tree, backups, one, split)
    if target.kind == "time":
        assert target.time is not None
        return split if target.time >= moment else None
    assert target.xid is not None
    return split if target.xid >= xid else None


def _reached_on(
    tree: TimelineTree, timeline: int, target: RecoveryTarget, point: TargetPoint
) -> bool:
    end_lsn = tree.end_lsn(timeline)
    if end_lsn is None or not tree.timelines.get(timeline) or not tree.timelines[timeline].has_wal:
        return False
    if point.lsn is not None:
        if point.lsn >= end_lsn:
            return False
        return point.timeline is None or tree.timeline_at(point.lsn, timeline) == point.timeline
    if target.kind == "time":
        end_time = tree.end_time(timeline)
        assert target.time is not None
        return end_time is not None and target.time <= end_time
    return True  # xid: the archive cannot tell which transactions a timeline holds


def _ambiguous(tree: TimelineTree, timelines: Sequence[int], detail: str) -> AmbiguousTarget:
    named = "; ".join(tree.describe(t) for t in timelines)
    return AmbiguousTarget(
        f"{detail}: {named}",
        hint="choose one with --target-timeline "
        + " or ".join(str(t) for t in timelines) + "; nothing was restored",
    )  # fmt: skip


def _latest_timeline(tree: TimelineTree, usable: Sequence[int]) -> tuple[int, str]:
    def stopped(timeline: int) -> datetime:
        return tree.end_time(timeline) or tree.born(timeline)

    leaves = [
        t for t in usable
        if not any(u != t and tree.born(u) >= stopped(t) for u in usable)
    ]  # fmt: skip
    if len(leaves) != 1:  # none: their archive times cannot be told apart
        raise _ambiguous(
            tree, leaves or list(usable), "the end of the archive is ambiguous: these "
            "timelines were archiving WAL at the same time, so which one is live is unknown",
        )  # fmt: skip
    chosen = leaves[0]
    others = [t for t in usable if t != chosen]
    why = f"the newest history (timelines {', '.join(map(str, others))} stopped before it began)"
    return chosen, why if others else "the only timeline in the archive"


def choose_timeline(
    tree: TimelineTree,
    catalog: Catalog[BaseBackupManifest],
    backups: Sequence[BaseBackupManifest],
    target: RecoveryTarget,
    point: TargetPoint,
) -> tuple[int, str]:
    """(timeline, why) for a target without an explicit --target-timeline number."""
    broken = tree.broken()
    if broken:
        tli, reason = next(iter(broken.items()))
        intact = [t for t in tree.with_wal if t not in broken]
        raise WalGap(
            f"the WAL archive is damaged: timeline {tli} cannot be followed ({reason})",
            hint="restore its history file, or recover along a timeline you name with "
            f"--target-timeline ({', '.join(map(str, intact)) or 'none intact'}); "
            "nothing was restored",
        )
    usable = [
        t for t in tree.numbers
        if any(_on_history(tree, t, b) and _reaches(b, target, point) for b in backups)
    ]  # fmt: skip
    if not usable:
        return backups[-1].timeline, "the backup's own timeline (no archived WAL follows it)"
    if target.kind == "latest":
        return _latest_timeline(tree, usable)
    reaching = [t for t in usable if _reached_on(tree, t, target, point)]
    if not reaching:
        return max(usable, key=lambda t: tree.end_lsn(t) or 0), "the longest history"
    for i, one in enumerate(reaching):
        for other in reaching[i + 1 :]:
            split = _disagree(tree, catalog.backups, one, other, target, point)
            if split is not None:
                holders = [t for t in reaching if t in (one, other)]
                raise _ambiguous(
                    tree, holders, f"target {target.describe()} lies on more than one history "
                    f"(they split at LSN {format_lsn(split)})",
                )  # fmt: skip
    if point.timeline is not None and point.timeline in reaching:
        return point.timeline, f"the timeline the restore point was made on ({point.timeline})"
    chosen = min(reaching)
    why = (
        "the only timeline holding the target"
        if len(reaching) == 1
        else (f"timelines {', '.join(map(str, reaching))} agree up to the target")
    )
    return chosen, why


# --- which backup, and can it get there --------------------------------------------------------


def _eligible(
    storage: Storage, catalog: Catalog[BaseBackupManifest], ref: str
) -> list[BaseBackupManifest]:
    if not catalog.backups:
        raise BackupNotFound(
            f"no complete base backup in {storage.url}",
            hint="take one with: backup-engine pg backup",
        )
    if ref == LATEST:
        resolve_backup(storage, LATEST)  # a newer manifest it cannot read: refuses to guess
    if ref in (AUTO, LATEST):
        return list(catalog.backups)
    matches = [b for b in catalog.backups if b.backup_id == ref]
    # Not listed as complete: the catalog's own error says why (incomplete, unknown).
    return matches or [resolve_backup(storage, ref)]


def _choose_backup(
    tree: TimelineTree,
    timeline: int | None,
    backups: Sequence[BaseBackupManifest],
    target: RecoveryTarget,
    point: TargetPoint,
    explicit: bool,
) -> BaseBackupManifest:
    on_line = [b for b in backups if timeline is None or _on_history(tree, timeline, b)]
    if not on_line:
        backup = backups[-1]
        raise TargetOutOfRange(
            f"backup {backup.backup_id} (timeline {backup.timeline}, LSN {backup.start_lsn} to "
            f"{backup.stop_lsn}) is not on the history of {tree.describe(timeline or 0)}",
            hint="pick a backup taken on that history, or another --target-timeline",
        )
    usable = [b for b in on_line if _reaches(b, target, point)]
    if usable:
        return usable[-1]  # the newest backup that reaches the target needs the least replay
    first = on_line[0]
    if explicit:
        raise TargetOutOfRange(
            f"target {target.describe()} is before backup {first.backup_id} ended "
            f"({first.stop_time.isoformat()}, LSN {first.stop_lsn})",
            hint="restore from an older backup, or let the tool choose with 'auto'",
        )
    raise TargetOutOfRange(
        f"target {target.describe()} is before the recoverable window, which starts when the "
        f"first backup ended: {first.stop_time.isoformat()} (LSN {first.stop_lsn}, backup "
        f"{first.backup_id})",
        hint="pick a later target",
    )


def plan_recovery(storage: Storage, ref: str, target: RecoveryTarget) -> RecoveryPlan:
    catalog = list_base_backups(storage)
    backups = _eligible(storage, catalog, ref)
    explicit = ref not in (AUTO, LATEST)
    point = _target_point(storage, target)
    tree = read_timeline_tree(storage, backups[-1].wal_segment_size)
    if target.kind == "immediate":
        backup = backups[-1]
        return RecoveryPlan(
            backup, target, backup.timeline, backup.stop_lsn_value, None,
            "the backup's own timeline (immediate)",
        )  # fmt: skip
    if target.timeline.isdigit():
        timeline: int | None = int(target.timeline)
        why = "asked for with --target-timeline"
        problem = tree.broken().get(int(target.timeline))
        if problem is not None:
            raise WalGap(f"timeline {target.timeline} cannot be followed: {problem}")
    elif target.timeline == "current":
        timeline, why = None, "the backup's own timeline (--target-timeline current)"
    else:
        timeline, why = choose_timeline(tree, catalog, backups, target, point)
    backup = _choose_backup(tree, timeline, backups, target, point, explicit)
    return _check_reachable(tree, backup, target, point, timeline or backup.timeline, why, storage)


def _check_reachable(
    tree: TimelineTree,
    backup: BaseBackupManifest,
    target: RecoveryTarget,
    point: TargetPoint,
    timeline: int,
    why: str,
    storage: Storage,
) -> RecoveryPlan:
    end_lsn = tree.end_lsn(timeline)
    window_end = tree.end_time(timeline)
    stop = backup.stop_lsn_value
    if end_lsn is None or end_lsn <= stop:
        raise NoWalAfterBackup(
            f"no WAL archived after backup {backup.backup_id} (LSN {backup.stop_lsn}) on "
            f"timeline {timeline} under {storage.url}/{WAL_PREFIX}",
            hint="is archive_command set to backup-engine pg wal-push? "
            "Use --target immediate to restore the backup alone",
        )
    window = f"{tree.describe(timeline)} ends at LSN {format_lsn(end_lsn)}" + (
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
        after = _first_segment_archived_after(tree, timeline, target.time)
        needs = end_lsn - 1 if after is None else after
    elif point.lsn is not None:
        if point.lsn >= end_lsn:
            raise TargetOutOfRange(
                f"target {target.describe()} (LSN {format_lsn(point.lsn)}) is beyond the "
                f"archived WAL: {window}",
                hint="wait for the segment to be archived, or pick an earlier target",
            )
        if point.timeline is not None and tree.timeline_at(point.lsn, timeline) != point.timeline:
            raise TargetOutOfRange(
                f"restore point {target.name!r} was made on timeline {point.timeline}, which is "
                f"not on the history of {tree.describe(timeline)} at its LSN",
                hint=f"use --target-timeline {point.timeline}",
            )
        needs = point.lsn
    # The backup's own pg_wal holds every segment up to its stop segment (fetched complete:
    # the backup ends with a segment switch); the archive must hold the rest.
    after_backup = (stop // backup.wal_segment_size + 1) * backup.wal_segment_size
    missing = tree.missing(timeline, after_backup, needs) if needs >= after_backup else []
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        shown = ", ".join(missing[:3]) + more
        raise WalGap(
            f"the WAL archive has a gap: {shown} missing, needed to recover from backup "
            f"{backup.backup_id} to {target.describe()} on timeline {timeline}",
            hint="choose an earlier target or a newer backup; nothing was restored",
        )
    return RecoveryPlan(backup, target, timeline, needs, window_end, why)


def _first_segment_archived_after(
    tree: TimelineTree, timeline: int, moment: datetime
) -> int | None:
    """LSN at the start of the first segment archived at or after `moment` on `timeline`'s
    history: replay to a time never needs more than that segment."""
    candidates = []
    size = tree.segment_size
    for part in tree.chain(timeline):
        found = tree.timelines.get(part.timeline)
        if found is None:
            continue
        last = None if part.end is None else part.end // size
        candidates += [
            n for n, o in found.objects().items()
            if o.modified and o.modified >= moment and (last is None or n <= last)
        ]  # fmt: skip
    return min(candidates) * size if candidates else None
