"""Which base backups a repository holds, and finding one by id or as "latest"."""

from __future__ import annotations

from backup_engine.postgres.manifest import BASE_PREFIX, MANIFEST_NAME, BaseBackupManifest
from backup_engine.snapshots import LATEST, Catalog, Incomplete, SnapshotKind
from backup_engine.storage import Storage

__all__ = ["BASE_BACKUPS", "LATEST", "Catalog", "Incomplete", "list_base_backups", "resolve_backup"]


def _parse(data: bytes, where: str) -> BaseBackupManifest:
    return BaseBackupManifest.from_json(data, where=where)


BASE_BACKUPS: SnapshotKind[BaseBackupManifest] = SnapshotKind(
    prefix=BASE_PREFIX,
    manifest_name=MANIFEST_NAME,
    parse=_parse,
    what="base backup",
    take_command="backup-engine pg backup",
    list_command="backup-engine pg list",
)


def list_base_backups(storage: Storage) -> Catalog[BaseBackupManifest]:
    return BASE_BACKUPS.list(storage)


def resolve_backup(storage: Storage, ref: str) -> BaseBackupManifest:
    return BASE_BACKUPS.resolve(storage, ref)
