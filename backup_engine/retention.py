"""Retention policy, as pure functions of the backups and a clock: which to keep, and why.

The plan's table: daily base backups kept 30 days, the weekly one (Sunday) 90 days, WAL 7 days;
Redis and media snapshots 30 days. Or by count, as many plans say ("keep the last 7 fulls",
pgBackRest's repo-retention-full, Barman's REDUNDANCY): `full_keep` N keeps the newest N full
backups and the incrementals built on them, instead of the daily and weekly days. On top of
either, three rules no policy may break:
- the newest backup of each kind is always kept;
- the point-in-time window is whole: the newest base backup that ended before the window
  starts is kept, and every WAL segment from its start onwards (recovering to the start of the
  window needs both);
- a retained base backup keeps the WAL segments between its start and stop;
- a retained incremental backup keeps every backup of its chain (it cannot restore without).
Nothing here touches storage: `expire.py` turns decisions into deletions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True)
class RetentionPolicy:
    daily_days: int = 30
    weekly_days: int = 90
    weekly_day: str = "sunday"
    wal_days: int = 7
    redis_days: int = 30
    media_days: int = 30
    full_keep: int = 0  # > 0: base backups kept by count (the newest N fulls), not by days

    @property
    def weekday(self) -> int:
        return WEEKDAYS.index(self.weekly_day)


class Dated(Protocol):
    @property
    def backup_id(self) -> str: ...

    @property
    def stop_time(self) -> datetime: ...


class BaseBackupLike(Dated, Protocol):
    @property
    def start_lsn_value(self) -> int: ...

    @property
    def parent_id(self) -> str | None: ...

    @property
    def stop_lsn_value(self) -> int: ...


B = TypeVar("B", bound=BaseBackupLike)


@dataclass(frozen=True)
class Decision:
    backup_id: str
    keep: bool
    reason: str


def _age_days(now: datetime, moment: datetime) -> float:
    return (now - moment) / timedelta(days=1)


def weekly_backups(backups: Sequence[Dated], weekday: int) -> set[str]:
    """The first backup taken on `weekday` in each ISO week: "the weekly one"."""
    chosen: dict[tuple[int, int], str] = {}
    for backup in sorted(backups, key=lambda b: b.stop_time):
        if backup.stop_time.weekday() == weekday:
            week = tuple(backup.stop_time.isocalendar())[:2]
            chosen.setdefault(week, backup.backup_id)  # type: ignore[arg-type]
    return set(chosen.values())


def base_backup_decisions(
    backups: Sequence[BaseBackupLike],
    policy: RetentionPolicy,
    now: datetime,
    pinned: Mapping[str, str] | None = None,
) -> list[Decision]:
    """`pinned`: backup id -> the operator's reason; a pinned backup is kept whatever its age."""
    ordered = sorted(backups, key=lambda b: b.stop_time)
    if not ordered:
        return []
    weekly = weekly_backups(ordered, policy.weekday)
    window_start = now - timedelta(days=policy.wal_days)
    anchor = pitr_anchor(ordered, window_start)
    by_count = _by_count(ordered, policy.full_keep) if policy.full_keep else None
    decisions = []
    for backup in ordered:
        age = _age_days(now, backup.stop_time)
        if backup is ordered[-1]:
            decisions.append(Decision(backup.backup_id, True, "newest backup (always kept)"))
        elif pinned and backup.backup_id in pinned:
            reason = f"pinned: {pinned[backup.backup_id]}"
            decisions.append(Decision(backup.backup_id, True, reason))
        elif by_count is not None:
            keep, reason = by_count[backup.backup_id]
            if not keep and backup is anchor:
                keep = True
                reason = f"needed to recover to the start of the {policy.wal_days}-day PITR window"
            decisions.append(Decision(backup.backup_id, keep, reason))
        elif age <= policy.daily_days:
            reason = f"daily, {age:.1f} days old (kept {policy.daily_days} days)"
            decisions.append(Decision(backup.backup_id, True, reason))
        elif backup.backup_id in weekly and age <= policy.weekly_days:
            reason = (
                f"weekly ({policy.weekly_day}), {age:.1f} days old (kept {policy.weekly_days} days)"
            )
            decisions.append(Decision(backup.backup_id, True, reason))
        elif backup is anchor:
            reason = f"needed to recover to the start of the {policy.wal_days}-day PITR window"
            decisions.append(Decision(backup.backup_id, True, reason))
        else:
            reason = f"{age:.1f} days old: past {policy.daily_days} days" + (
                f" and past {policy.weekly_days} days for weekly backups"
                if backup.backup_id in weekly
                else " and not a weekly backup"
            )
            decisions.append(Decision(backup.backup_id, False, reason))
    return keep_chains(decisions, ordered)


def _by_count(ordered: Sequence[BaseBackupLike], keep: int) -> dict[str, tuple[bool, str]]:
    """Backup id -> (kept, why) under `full_keep`: the newest `keep` fulls, and every
    incremental whose chain starts at one of them (a chain broken by a missing parent keeps
    its incrementals: what we cannot follow, we do not delete from)."""
    by_id = {b.backup_id: b for b in ordered}
    fulls = [b.backup_id for b in ordered if b.parent_id is None]
    kept_fulls = set(fulls[-keep:])

    def root(backup: BaseBackupLike) -> str | None:
        seen = {backup.backup_id}
        while backup.parent_id is not None:
            parent = by_id.get(backup.parent_id)
            if parent is None or parent.backup_id in seen:
                return None
            seen.add(parent.backup_id)
            backup = parent
        return backup.backup_id

    verdicts = {}
    for backup in ordered:
        start = root(backup)
        if backup.parent_id is None:
            rank = len(fulls) - fulls.index(backup.backup_id)
            verdicts[backup.backup_id] = (
                (True, f"full backup, newest {rank} of {len(fulls)} (kept: the newest {keep})")
                if backup.backup_id in kept_fulls
                else (False, f"full backup, newest {rank} of {len(fulls)}: past the newest {keep}")
            )
        elif start is None:
            verdicts[backup.backup_id] = (True, "incremental whose chain cannot be followed")
        elif start in kept_fulls:
            verdicts[backup.backup_id] = (True, f"incremental on kept full backup {start}")
        else:
            verdicts[backup.backup_id] = (False, f"incremental on full backup {start}, expired")
    return verdicts


def keep_chains(decisions: Sequence[Decision], backups: Sequence[BaseBackupLike]) -> list[Decision]:
    """Each kept backup keeps its parents, and theirs (a parent missing from `backups` ends
    the walk: there is nothing to keep; a loop ends it too)."""
    by_id = {b.backup_id: b for b in backups}
    needed_by: dict[str, str] = {}
    for decision in decisions:
        if not decision.keep:
            continue
        seen = {decision.backup_id}
        parent = by_id[decision.backup_id].parent_id if decision.backup_id in by_id else None
        while parent is not None and parent in by_id and parent not in seen:
            needed_by.setdefault(parent, decision.backup_id)
            seen.add(parent)
            parent = by_id[parent].parent_id
    return [
        Decision(d.backup_id, True, f"parent of kept incremental {needed_by[d.backup_id]}")
        if not d.keep and d.backup_id in needed_by
        else d
        for d in decisions
    ]


def pitr_anchor(backups: Sequence[B], window_start: datetime) -> B:
    """The newest backup that ended before the PITR window opens (else the oldest backup)."""
    ordered = sorted(backups, key=lambda b: b.stop_time)
    before = [b for b in ordered if b.stop_time <= window_start]
    return before[-1] if before else ordered[0]


def wal_keep_ranges(
    kept: Sequence[BaseBackupLike], policy: RetentionPolicy, now: datetime, segment_size: int
) -> tuple[int, list[tuple[int, int]]]:
    """(first segment number of the PITR window's WAL, [(start, stop) segments of each kept
    backup]). Every segment at or after the first number, or inside a range, is kept."""
    ordered = sorted(kept, key=lambda b: b.stop_time)
    anchor = pitr_anchor(ordered, now - timedelta(days=policy.wal_days))
    ranges = [
        (b.start_lsn_value // segment_size, b.stop_lsn_value // segment_size) for b in ordered
    ]
    return anchor.start_lsn_value // segment_size, ranges


def keep_segment(number: int, window_from: int, ranges: Sequence[tuple[int, int]]) -> bool:
    return number >= window_from or any(low <= number <= high for low, high in ranges)


def snapshot_decisions(
    snapshots: Sequence[Dated],
    keep_days: int,
    now: datetime,
    what: str,
    pinned: Mapping[str, str] | None = None,
) -> list[Decision]:
    """Redis and media snapshots: kept `keep_days`, the newest always."""
    ordered = sorted(snapshots, key=lambda s: s.stop_time)
    decisions = []
    for snapshot in ordered:
        age = _age_days(now, snapshot.stop_time)
        if snapshot is ordered[-1]:
            decisions.append(Decision(snapshot.backup_id, True, f"newest {what} (always kept)"))
        elif pinned and snapshot.backup_id in pinned:
            reason = f"pinned: {pinned[snapshot.backup_id]}"
            decisions.append(Decision(snapshot.backup_id, True, reason))
        elif age <= keep_days:
            reason = f"{age:.1f} days old (kept {keep_days} days)"
            decisions.append(Decision(snapshot.backup_id, True, reason))
        else:
            reason = f"{age:.1f} days old: past {keep_days} days"
            decisions.append(Decision(snapshot.backup_id, False, reason))
    return decisions
