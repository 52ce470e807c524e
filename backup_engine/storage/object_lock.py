"""S3 Object Lock: what the tool writes stays undeletable for as long as the plan keeps it.

With `[repository] object_lock = "governance" | "compliance"`, every object a backup writes
carries a retention date (`ObjectLockRetainUntilDate`) of the store's own time plus the days the
retention plan keeps that kind of object: base backups and WAL as long as the longest of the daily,
weekly and WAL windows (a WAL segment written today is needed by backups kept that long), Redis and
media snapshots their own windows, drill evidence kept in the repository `[drill] keep_days`. Lock
files and pins are not locked: they must be deletable when their work ends. Until then nobody
holding the bucket's keys can delete or replace a version (COMPLIANCE: not even with the bypass
permission); `expire` plans around what is still locked and removes it on a later run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from backup_engine.errors import ConfigError

if TYPE_CHECKING:
    from backup_engine.retention import RetentionPolicy

MODES = ("governance", "compliance")
EVIDENCE_PREFIX = "drill-reports/"  # drill evidence kept in the repository (--keep-in-repository)


@dataclass(frozen=True)
class ObjectLock:
    mode: str  # as S3 spells it: "GOVERNANCE" or "COMPLIANCE"
    days: tuple[tuple[str, int], ...]  # key prefix -> days of retention; first match wins

    def days_for(self, key: str) -> int | None:
        """How long an object written under `key` is locked; None: not locked at all."""
        for prefix, days in self.days:
            if key.startswith(prefix):
                return days
        return None

    @property
    def longest(self) -> int:
        return max(days for _, days in self.days)

    def describe(self) -> str:
        kinds = ", ".join(f"{prefix}* {days} d" for prefix, days in self.days)
        return f"{self.mode} ({kinds})"


def plan_lock(mode: str, policy: RetentionPolicy, evidence_days: int) -> ObjectLock:
    """The retention that covers `policy`: every object locked at least as long as kept."""
    if mode.lower() not in MODES:
        raise ConfigError(f"unknown Object Lock mode {mode!r}", hint="use governance or compliance")
    postgres = max(policy.daily_days, policy.weekly_days, policy.wal_days)
    days: list[tuple[str, int]] = [
        ("postgres/", postgres),  # base backups, WAL, restore points
        ("redis/", policy.redis_days),
        ("media/", policy.media_days),
    ]
    if evidence_days > 0:
        days.append((EVIDENCE_PREFIX, evidence_days))
    return ObjectLock(mode.upper(), tuple(days))


@dataclass(frozen=True)
class LockState:
    """What the store says protects one object now."""

    until: datetime | None  # retention date; None: no retention
    mode: str | None = None
    legal_hold: bool = False

    def locked(self, now: datetime) -> bool:
        return self.legal_hold or (self.until is not None and self.until > now)

    def describe(self) -> str:
        parts = []
        if self.until is not None:
            parts.append(f"locked until {self.until:%Y-%m-%d %H:%M} UTC ({self.mode})")
        if self.legal_hold:
            parts.append("under legal hold")
        return " and ".join(parts) or "not locked"
