"""What every kind of backup shares: a directory of objects per backup id, completed by a
manifest written last. A backup without a readable manifest is incomplete and never offered
for restore. PostgreSQL base backups, Redis snapshots and media snapshots are all catalogued
this way; only the prefix and the manifest type differ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from backup_engine.errors import (
    BackupNotFound,
    CorruptObject,
    IntegrityError,
    ObjectNotFound,
)
from backup_engine.storage.base import Storage
from backup_engine.timefmt import BACKUP_ID, backup_id_for

LATEST = "latest"


def id_order(backup_id: str) -> tuple[str, int]:
    """Backup ids sort by time, then by the -2, -3 ... -10 of ids taken in the same second."""
    base, _, n = backup_id.partition("-")
    return base, int(n) if n.isdigit() else 0


class Manifest(Protocol):
    @property
    def backup_id(self) -> str: ...

    @property
    def stop_time(self) -> datetime: ...


M = TypeVar("M", bound=Manifest)


@dataclass(frozen=True)
class Incomplete:
    backup_id: str
    reason: str


@dataclass(frozen=True)
class Catalog(Generic[M]):
    """What a repository holds of one kind. `incomplete`: objects without a manifest (a backup
    interrupted or still running). `unreadable`: a manifest that is there but cannot be read
    (damaged, forged, encrypted with another key, a newer format): nothing may be concluded
    from it, least of all that its backup can be deleted."""

    backups: tuple[M, ...]  # complete ones, oldest first
    incomplete: tuple[Incomplete, ...]
    unreadable: tuple[Incomplete, ...] = ()
    foreign: tuple[str, ...] = ()  # keys under the prefix this tool never writes: ignored

    @property
    def latest(self) -> M | None:
        return self.backups[-1] if self.backups else None


@dataclass(frozen=True)
class SnapshotKind(Generic[M]):
    prefix: str  # e.g. "postgres/base/"
    manifest_name: str  # e.g. "backup.json"
    parse: Callable[[bytes, str], M]  # (manifest bytes, where) -> manifest; CorruptObject if bad
    what: str  # "base backup", for messages
    take_command: str  # how to make one, for hints
    list_command: str  # how to see them, for hints

    def backup_prefix(self, backup_id: str) -> str:
        return f"{self.prefix}{backup_id}/"

    def new_backup_id(self, storage: Storage, now: datetime) -> str:
        """A time-ordered id not used yet in this repository (two in one second get -2, -3)."""
        base = backup_id_for(now)
        candidate, n = base, 1
        while any(True for _ in storage.list(self.backup_prefix(candidate))):
            n += 1
            candidate = f"{base}-{n}"
        return candidate

    def manifest_key(self, backup_id: str) -> str:
        return f"{self.backup_prefix(backup_id)}{self.manifest_name}"

    def read(self, storage: Storage, backup_id: str) -> M:
        key = self.manifest_key(backup_id)
        manifest = self.parse(storage.get_bytes(key), f"{storage.url}/{key}")
        if manifest.backup_id != backup_id:
            raise CorruptObject(f"{key} describes {manifest.backup_id}, not {backup_id}")
        return manifest

    def list(self, storage: Storage) -> Catalog[M]:
        names: dict[str, set[str]] = {}
        foreign: list[str] = []
        for info in storage.list(self.prefix):
            backup_id, _, name = info.key[len(self.prefix) :].partition("/")
            if not BACKUP_ID.match(backup_id):  # someone else's object: not a backup of ours
                foreign.append(info.key)
                continue
            names.setdefault(backup_id, set()).add(name)
        complete: list[M] = []
        incomplete: list[Incomplete] = []
        unreadable: list[Incomplete] = []
        for backup_id, found in sorted(names.items()):
            if self.manifest_name not in found:
                reason = f"no {self.manifest_name}: interrupted or running"
                incomplete.append(Incomplete(backup_id, reason))
                continue
            try:
                complete.append(self.read(storage, backup_id))
            except ObjectNotFound:  # deleted between the listing and the read
                incomplete.append(Incomplete(backup_id, f"{self.manifest_name} vanished"))
            except (CorruptObject, IntegrityError) as exc:  # a wrong key (ConfigError) propagates
                unreadable.append(Incomplete(backup_id, exc.message))
        complete.sort(key=lambda m: (m.stop_time, id_order(m.backup_id)))
        return Catalog(tuple(complete), tuple(incomplete), tuple(unreadable), tuple(foreign))

    def resolve(self, storage: Storage, ref: str) -> M:
        """`ref` is a backup id or "latest"; only complete backups resolve."""
        catalog = self.list(storage)
        for item in catalog.unreadable:
            newer = catalog.latest is None or id_order(item.backup_id) > id_order(
                catalog.latest.backup_id
            )
            if item.backup_id == ref or (ref == LATEST and newer):
                raise CorruptObject(
                    f"the manifest of {self.what} {item.backup_id} cannot be read: {item.reason}",
                    hint="refusing to guess; name another backup explicitly, and check the "
                    "repository (encryption key, tool version, tampering)",
                )
        if ref == LATEST:
            if catalog.latest is None:
                raise BackupNotFound(
                    f"no complete {self.what} in {storage.url}",
                    hint=f"take one with: {self.take_command}",
                )
            return catalog.latest
        for manifest in catalog.backups:
            if manifest.backup_id == ref:
                return manifest
        for item in catalog.incomplete:
            if item.backup_id == ref:
                raise BackupNotFound(
                    f"{self.what} {ref} is incomplete ({item.reason}) and cannot be used"
                )
        known = ", ".join(m.backup_id for m in catalog.backups[-3:]) or "none"
        raise BackupNotFound(
            f"no {self.what} {ref!r} in {storage.url}",
            hint=f"see: {self.list_command}; newest: {known}",
        )
