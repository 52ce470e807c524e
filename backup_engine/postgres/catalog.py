"""Which base backups a repository holds, and finding one by id or as "latest"."""

from __future__ import annotations

from dataclasses import dataclass

from backup_engine.errors import BackupNotFound, CorruptObject, ObjectNotFound
from backup_engine.postgres.manifest import (
    BASE_PREFIX,
    MANIFEST_NAME,
    BaseBackupManifest,
    manifest_key,
)
from backup_engine.storage import Storage

LATEST = "latest"


@dataclass(frozen=True)
class Incomplete:
    backup_id: str
    reason: str


@dataclass(frozen=True)
class Catalog:
    backups: tuple[BaseBackupManifest, ...]  # complete ones, oldest first
    incomplete: tuple[Incomplete, ...]

    @property
    def latest(self) -> BaseBackupManifest | None:
        return self.backups[-1] if self.backups else None


def read_manifest(storage: Storage, backup_id: str) -> BaseBackupManifest:
    key = manifest_key(backup_id)
    manifest = BaseBackupManifest.from_json(storage.get_bytes(key), where=f"{storage.url}/{key}")
    if manifest.backup_id != backup_id:
        raise CorruptObject(f"{key} describes backup {manifest.backup_id}, not {backup_id}")
    return manifest


def list_base_backups(storage: Storage) -> Catalog:
    ids: dict[str, set[str]] = {}
    for info in storage.list(BASE_PREFIX):
        backup_id, _, name = info.key[len(BASE_PREFIX) :].partition("/")
        ids.setdefault(backup_id, set()).add(name)
    complete: list[BaseBackupManifest] = []
    incomplete: list[Incomplete] = []
    for backup_id, names in sorted(ids.items()):
        if MANIFEST_NAME not in names:
            incomplete.append(Incomplete(backup_id, f"no {MANIFEST_NAME}: interrupted or running"))
            continue
        try:
            complete.append(read_manifest(storage, backup_id))
        except (CorruptObject, ObjectNotFound) as exc:
            incomplete.append(Incomplete(backup_id, exc.message))
    complete.sort(key=lambda m: (m.stop_time, m.backup_id))
    return Catalog(tuple(complete), tuple(incomplete))


def resolve_backup(storage: Storage, ref: str) -> BaseBackupManifest:
    """`ref` is a backup id or "latest"; only complete backups resolve."""
    catalog = list_base_backups(storage)
    if ref == LATEST:
        if catalog.latest is None:
            raise BackupNotFound(
                f"no complete base backup in {storage.url}",
                hint="take one with: backup-engine pg backup",
            )
        return catalog.latest
    for manifest in catalog.backups:
        if manifest.backup_id == ref:
            return manifest
    for item in catalog.incomplete:
        if item.backup_id == ref:
            raise BackupNotFound(f"backup {ref} is incomplete ({item.reason}) and cannot be used")
    known = ", ".join(m.backup_id for m in catalog.backups[-3:]) or "none"
    raise BackupNotFound(
        f"no backup {ref!r} in {storage.url}",
        hint=f"run backup-engine pg list; newest: {known}",
    )
