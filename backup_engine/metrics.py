"""Prometheus textfile metrics of the backups themselves (`backup-engine metrics`): when the
newest backup of each kind ended and how big it is, and when the newest WAL was archived."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from backup_engine.media.manifest import MEDIA_SNAPSHOTS
from backup_engine.postgres.catalog import BASE_BACKUPS
from backup_engine.postgres.wal import META_ARCHIVED_AT, WAL_PREFIX
from backup_engine.redis.manifest import REDIS_BACKUPS
from backup_engine.storage.base import Storage

BACKUP_LAST = "restore_drill_backup_last_timestamp_seconds"
BACKUP_SIZE = "restore_drill_backup_last_size_bytes"
WAL_LAST = "restore_drill_wal_last_archived_timestamp_seconds"


@dataclass(frozen=True)
class LatestBackup:
    kind: str
    timestamp: float
    size: int


def latest_backups(storage: Storage) -> list[LatestBackup]:
    found = []
    base, redis = BASE_BACKUPS.list(storage).latest, REDIS_BACKUPS.list(storage).latest
    media = MEDIA_SNAPSHOTS.list(storage).latest
    if base is not None:
        found.append(LatestBackup("postgres", base.stop_time.timestamp(), base.stored_bytes))
    if redis is not None:
        found.append(LatestBackup("redis", redis.stop_time.timestamp(), redis.stored_bytes))
    if media is not None:  # content is shared: a snapshot's own size is what it added
        found.append(LatestBackup("media", media.stop_time.timestamp(), media.new_bytes))
    return found


def last_wal_archived(storage: Storage) -> float | None:
    never = datetime.min.replace(tzinfo=UTC)
    newest = max(storage.list(WAL_PREFIX), key=lambda o: (o.modified or never, o.key), default=None)
    if newest is None:
        return None
    recorded = storage.stat(newest.key).metadata.get(META_ARCHIVED_AT)
    if recorded:
        return datetime.fromisoformat(recorded).timestamp()
    return newest.modified.timestamp() if newest.modified else None


REPOSITORY_BYTES = "restore_drill_repository_bytes"
WAL_BACKLOG = "restore_drill_wal_backlog_bytes"
WAL_BACKLOG_LIMIT = "restore_drill_wal_backlog_limit_bytes"


@dataclass(frozen=True)
class Backlog:
    bytes: int  # WAL PostgreSQL finished and has not archived yet
    limit_bytes: int  # [wal] queue_max_mb


def write_backup_metrics(
    path: Path,
    storage: Storage,
    expected: tuple[str, ...] = (),
    usage: dict[str, int] | None = None,
    backlog: Backlog | None = None,
) -> list[LatestBackup]:
    """`expected`: the kinds the configuration backs up. One with no backup at all is written
    as ended at 0 (1970), so "no backup in 26 hours" fires for it instead of its series
    being absent. `usage`: bytes stored per backup type (`backup-engine usage`)."""
    registry = CollectorRegistry()
    last = Gauge(BACKUP_LAST, "When the newest complete backup ended", ["kind"], registry=registry)
    size = Gauge(BACKUP_SIZE, "Bytes stored by the newest backup", ["kind"], registry=registry)
    backups = latest_backups(storage)
    found = {b.kind for b in backups}
    for kind in expected:
        if kind not in found:
            last.labels(kind).set(0)
    for backup in backups:
        last.labels(backup.kind).set(backup.timestamp)
        size.labels(backup.kind).set(backup.size)
    archived = last_wal_archived(storage)
    if archived is not None:
        Gauge(WAL_LAST, "When the newest WAL file was archived", registry=registry).set(archived)
    if usage is not None:
        stored = Gauge(REPOSITORY_BYTES, "Bytes the repository stores, per backup type",
                       ["type"], registry=registry)  # fmt: skip
        for kind, count in usage.items():
            stored.labels(kind).set(count)
    if backlog is not None:
        Gauge(WAL_BACKLOG, "WAL waiting to be archived (pg_wal/archive_status .ready files)",
              registry=registry).set(backlog.bytes)  # fmt: skip
        Gauge(WAL_BACKLOG_LIMIT, "[wal] queue_max_mb: the backlog that is too much",
              registry=registry).set(backlog.limit_bytes)  # fmt: skip
    write_to_textfile(str(path), registry)
    return backups
