"""`backup-engine usage`: what the repository stores, per kind and per month, and what it costs,
laid out like the plan's "Storage Requirements" table with the plan's estimate beside it."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from backup_engine.kinds import KINDS
from backup_engine.postgres.catalog import BASE_BACKUPS
from backup_engine.postgres.wal import WAL_PREFIX
from backup_engine.retention import weekly_backups
from backup_engine.storage.base import Storage

S3_STANDARD_PER_GB_MONTH = 0.023  # USD, us-east-1 list price, first 50 TB
GB = 10**9

# The plan's "Storage Requirements" table: (row, estimated bytes).
PLAN: dict[str, int | None] = {
    "Daily database": 150 * GB,
    "Weekly snapshot": 60 * GB,
    "WAL archives": 10 * GB,
    "Redis snapshots": None,
    "Media backups": 50 * GB,
    "Other (locks, pins, evidence)": None,
}
OTHER = "Other (locks, pins, evidence)"
ROWS = tuple(PLAN)


@dataclass
class KindUsage:
    kind: str
    objects: int = 0
    bytes: int = 0
    by_month: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    locked_bytes: int = 0  # under Object Lock: still within the retention the tool gave it

    def cost(self, price: float) -> float:
        return self.bytes / GB * price


@dataclass
class Usage:
    kinds: dict[str, KindUsage]
    noncurrent_objects: int | None = None  # None: not a versioned S3 bucket
    noncurrent_bytes: int | None = None

    @property
    def total_bytes(self) -> int:
        return sum(k.bytes for k in self.kinds.values()) + (self.noncurrent_bytes or 0)

    def months(self) -> list[str]:
        return sorted({m for k in self.kinds.values() for m in k.by_month})


def _kind(key: str, weekly: set[str]) -> str:
    """The plan's row a stored object counts under: base backups split into the weekly ones
    and the daily ones, WAL on its own, every other kind its registered row."""
    if key.startswith(BASE_BACKUPS.prefix):
        backup_id = key.removeprefix(BASE_BACKUPS.prefix).split("/", 1)[0]
        return "Weekly snapshot" if backup_id in weekly else "Daily database"
    if key.startswith(WAL_PREFIX):
        return "WAL archives"
    return next((k.usage_row for k in KINDS if key.startswith(k.prefix)), OTHER)


def measure(storage: Storage, weekly_day: int) -> Usage:
    """One listing of the whole repository (plus, on a versioned S3 bucket, its old versions).
    Under Object Lock, locked bytes are those written less than their kind's lock days ago (by
    the store's clock): the retention this plan gives them, read from the listing, not one HEAD
    per object; a pin's legal hold and a longer earlier plan are not counted."""
    backups = BASE_BACKUPS.list(storage).backups
    weekly = weekly_backups(backups, weekly_day)
    kinds = {name: KindUsage(name) for name in ROWS}
    lock = storage.object_lock
    now = storage.store_now() if lock else None
    for info in storage.list(""):
        usage = kinds[_kind(info.key, weekly)]
        usage.objects += 1
        usage.bytes += info.size
        days = lock.days_for(info.key) if lock else None
        if days is not None and now and info.modified and info.modified + timedelta(days) > now:
            usage.locked_bytes += info.size
        month = info.modified.strftime("%Y-%m") if info.modified else "unknown"
        usage.by_month[month] += info.size
    found = Usage(kinds)
    noncurrent = _noncurrent(storage)
    if noncurrent is not None:
        found.noncurrent_objects, found.noncurrent_bytes = noncurrent
    return found


def _noncurrent(storage: Storage) -> tuple[int, int] | None:
    from backup_engine.storage.s3 import S3Storage

    inner = storage
    while not isinstance(inner, S3Storage) and hasattr(inner, "inner"):
        inner = inner.inner
    if not isinstance(inner, S3Storage):
        return None
    from backup_engine.storage.admin import BucketAdmin

    admin = BucketAdmin(inner)
    if admin.versioning() != "Enabled":
        return None
    return admin.noncurrent()
