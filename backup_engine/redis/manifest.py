"""`backup.json` of a Redis snapshot, and where Redis backups live in the repository."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from backup_engine.manifests import ManifestMixin, StoredFile
from backup_engine.snapshots import SnapshotKind

KIND = "redis-rdb"
RDB_NAME = "dump.rdb"


@dataclass(frozen=True)
class RedisBackupManifest(ManifestMixin):
    KIND: ClassVar[str] = KIND

    backup_id: str
    start_time: datetime
    stop_time: datetime
    redis_version: str
    source: str  # scheme://host:port, never credentials
    keys: dict[str, int]  # "db0" -> number of keys when the snapshot was requested
    compression: str
    files: tuple[StoredFile, ...]
    tool_version: str
    kind: str = KIND
    format_version: int = 1
    extra: dict[str, object] = field(default_factory=dict)


def _parse(data: bytes, where: str) -> RedisBackupManifest:
    return RedisBackupManifest.from_json(data, where=where)


REDIS_BACKUPS: SnapshotKind[RedisBackupManifest] = SnapshotKind(
    prefix="redis/",
    manifest_name="backup.json",
    parse=_parse,
    what="Redis backup",
    take_command="backup-engine redis backup",
    list_command="backup-engine redis list",
)
