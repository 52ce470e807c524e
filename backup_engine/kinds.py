"""The kinds of backup this tool keeps, each registered once: PostgreSQL base backups, Redis
snapshots and media snapshots.

What the shared commands need of a kind lives here and nowhere else: its catalog, whether the
configuration backs it up, its retention decisions (pins included), how its newest backup is
checked, what it counts as its size in the metrics, its row in the plan's storage table, and
how `run-all` takes one. `expire`, `check`, `metrics`, `usage`, `run-all` and the pin, show and
delete commands loop over `KINDS`; a repository or a stanza reaches every kind through the
`Storage` and `Settings` they are given. What only one kind has (WAL, media packs) stays with
the code that knows it. Catalog modules are imported when first used: startup stays lean.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backup_engine.config import Settings
    from backup_engine.progress import Progress
    from backup_engine.retention import Decision, RetentionPolicy
    from backup_engine.snapshots import SnapshotKind
    from backup_engine.storage.base import Storage

# A run-all job: its name and what takes the backup (returns its id and the bytes it stored).
Job = tuple[str, Callable[[], tuple[str, int]]]


@dataclass(frozen=True)
class BackupKind:
    name: str  # "postgres": pins/<name>/, metric label `kind`, expire's KIND column
    what: str  # "base backup", for messages
    command: str  # the CLI group: backup-engine <command> pin ID
    usage_row: str  # the plan's "Storage Requirements" row its objects count under
    _catalog: str  # "module:ATTRIBUTE" of its SnapshotKind
    configured: Callable[[Settings], bool]
    own_bytes: Callable[[Any], int]  # what the newest backup itself stored (metrics)
    _jobs: Callable[[BackupKind, Settings, Progress], list[Job]]

    @property
    def catalog(self) -> SnapshotKind[Any]:
        module, _, attribute = self._catalog.partition(":")
        return getattr(importlib.import_module(module), attribute)

    @property
    def prefix(self) -> str:
        """Everything of this kind is stored under it (a base backup's WAL too)."""
        return f"{self.name}/"

    def decisions(
        self, storage: Storage, backups: Sequence[Any], policy: RetentionPolicy, now: datetime
    ) -> list[Decision]:
        """Keep or expire, and why, for each backup of this kind; pins read from `storage`."""
        from backup_engine.pins import read_pins
        from backup_engine.retention import base_backup_decisions, snapshot_decisions

        pins = read_pins(storage, self.name)
        if self is POSTGRES:
            return base_backup_decisions(backups, policy, now, pins)
        days = getattr(policy, f"{self.name}_days")
        return snapshot_decisions(backups, days, now, self.what, pins)

    def check_newest(self, storage: Storage, manifest: Any, *, deep: bool) -> str:
        """The newest backup holds what its manifest lists (with `deep`: every byte matches
        its sha256). Returns what was found whole; raises BackupEngineError naming the object."""
        from backup_engine.errors import BackupEngineError
        from backup_engine.integrity import Expected, verify_object

        if self is MEDIA:
            from backup_engine.media.restore import missing_media_content, verify_media

            if deep:
                verify_media(storage, manifest.backup_id)
            elif missing := missing_media_content(storage, manifest):
                raise BackupEngineError(f"{missing[0]} ({len(missing)} in all)")
            return "every object present"
        for stored in manifest.files:
            if deep:
                verify_object(storage, Expected.of(stored))
            elif storage.stat(stored.key).size != stored.size:
                raise BackupEngineError(f"stored object {stored.key} has the wrong size")
        return "every object matches its sha256" if deep else "every object present, sizes match"

    def jobs(self, settings: Settings, progress: Progress) -> list[Job]:
        return self._jobs(self, settings, progress) if self.configured(settings) else []


def _postgres_jobs(kind: BackupKind, settings: Settings, progress: Progress) -> list[Job]:
    from backup_engine.postgres.basebackup import take_base_backup

    storage = settings.open_write_storage()  # one stream, every repository (repositories.py)
    options, codec = settings.postgres.backup_options(), settings.compression.get()

    def postgres() -> tuple[str, int]:
        manifest = take_base_backup(storage, codec, options, progress=progress)
        return manifest.backup_id, manifest.stored_bytes

    return [(f"postgres {settings.stanza}" if settings.stanza else "postgres", postgres)]


def _redis_jobs(kind: BackupKind, settings: Settings, progress: Progress) -> list[Job]:
    from backup_engine.redis.backup import take_redis_backup
    from backup_engine.redis.target import RedisTarget

    storage, codec = settings.open_write_storage(), settings.compression.get()
    target = RedisTarget(str(settings.redis.url))

    def redis() -> tuple[str, int]:
        manifest = take_redis_backup(storage, codec, target, progress=progress)
        return manifest.backup_id, manifest.stored_bytes

    return [("redis", redis)]


def media_snapshots(settings: Settings, root: Path, progress: Progress) -> list[tuple[int, Any]]:
    """(repository number, manifest) of a snapshot of `root` taken into each repository in
    turn: each deduplicates against its own packs (repositories.for_each)."""
    from backup_engine.media.snapshot import take_media_snapshot
    from backup_engine.repositories import for_each

    codec = settings.compression.get()
    return for_each(
        settings.open_storages(), settings.repository.acknowledge, f"snapshot {root}",
        lambda store: take_media_snapshot(store, codec, root, progress=progress,
                                          concurrency=settings.media.concurrency),
    )  # fmt: skip


def _media_jobs(kind: BackupKind, settings: Settings, progress: Progress) -> list[Job]:
    def media(root: Path) -> tuple[str, int]:
        manifest = media_snapshots(settings, root, progress)[0][1]
        return manifest.backup_id, manifest.new_bytes

    return [(f"media {path}", partial(media, Path(path))) for path in settings.media.paths]


POSTGRES = BackupKind(
    "postgres", "base backup", "pg", "Daily database",
    "backup_engine.postgres.catalog:BASE_BACKUPS",
    # with stanzas, [postgres] holds what they share: each stanza is its own cluster
    configured=lambda s: bool(s.postgres.dsn) and not s.needs_stanza,
    own_bytes=lambda m: m.stored_bytes, _jobs=_postgres_jobs,
)  # fmt: skip
REDIS = BackupKind(
    "redis", "Redis backup", "redis", "Redis snapshots",
    "backup_engine.redis.manifest:REDIS_BACKUPS",
    configured=lambda s: bool(s.redis.url), own_bytes=lambda m: m.stored_bytes,
    _jobs=_redis_jobs,
)  # fmt: skip
MEDIA = BackupKind(
    "media", "media snapshot", "media", "Media backups",
    "backup_engine.media.manifest:MEDIA_SNAPSHOTS",
    configured=lambda s: bool(s.media.paths),
    own_bytes=lambda m: m.new_bytes,  # content is shared: a snapshot's own size is what it added
    _jobs=_media_jobs,
)  # fmt: skip
KINDS: tuple[BackupKind, ...] = (POSTGRES, REDIS, MEDIA)
BY_NAME = {kind.name: kind for kind in KINDS}
