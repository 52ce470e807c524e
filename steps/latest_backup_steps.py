"""Steps for the seed plan's restore test: take the latest backup in the configured repository
(production's, read-only) and restore it into an isolated server.

With no repository configured, the embedded default first makes one: a seeded, archiving source
server and its base backup in the embedded S3. Either way the steps after that are the same.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime

from pytest_bdd import given, when

from backup_engine.codecs import get_codec
from backup_engine.config import load_settings
from backup_engine.drill.evidence import ScenarioRecord
from backup_engine.drill.recovery import RestoredServer, record_restore, restore_into_new_server
from backup_engine.drill.seed import seed_shop
from backup_engine.drill.selection import SELECTION_ENV, choose_backup
from backup_engine.errors import ConfigError
from backup_engine.postgres.archiving import switch_and_wait_archived
from backup_engine.postgres.basebackup import BaseBackupOptions, take_base_backup
from backup_engine.postgres.catalog import list_base_backups
from backup_engine.postgres.connection import connect, describe
from backup_engine.postgres.manifest import BaseBackupManifest
from backup_engine.postgres.recovery import wait_for_connected_recovery
from backup_engine.servers import PostgresBackend, PostgresServer
from backup_engine.servers.attached import AttachedPostgresServer
from backup_engine.storage import Storage
from backup_engine.storage.faults import ReadOnlyStorage

from . import StorageFactory
from .pitr_steps import archiving_settings

CONFIG_ENV = "BACKUP_ENGINE_CONFIG"
LATER_SESSIONS = """
INSERT INTO sessions (user_id, token, user_agent, created_at, expires_at)
SELECT id, md5(random()::text), 'after-backup', now(), now() + interval '1 day'
FROM users ORDER BY id LIMIT 100
"""


@dataclass(frozen=True)
class LatestBackup:
    repository: Storage
    manifest: BaseBackupManifest
    embedded: bool


def configured_repository() -> Storage | None:
    """The repository the operator configured; None only when nothing is configured at all.
    A configuration without a repository is an error: the drill of production's backup never
    quietly turns into a drill of data it made up."""
    if os.environ.get(CONFIG_ENV) or os.environ.get("BACKUP_ENGINE_REPOSITORY"):
        settings = load_settings()
        if not settings.repository.url:
            raise ConfigError(
                "a configuration is given but it names no repository",
                hint="set [repository] url: the latest-backup drill never falls back to "
                "synthetic data when a configuration is given",
            )
        return ReadOnlyStorage(settings.open_storage())
    return None


@given("the latest PostgreSQL base backup in the configured repository", target_fixture="latest")
def latest_backup(
    storage_factory: StorageFactory, pg_backend: PostgresBackend, drill_record: ScenarioRecord
) -> LatestBackup:
    repository = configured_repository()
    selection = os.environ.get(SELECTION_ENV, "latest")
    if repository is not None:
        catalog = list_base_backups(repository)
        manifest, how = choose_backup(catalog.backups, selection, datetime.now(UTC))
        drill_record.source(repository.url, data="existing", selection=how)
        return LatestBackup(repository, manifest, embedded=False)
    repository = storage_factory()  # the embedded default: make a backup worth restoring
    drill_record.source(repository.url, data="synthetic", selection="the one the drill made")
    source = pg_backend.create(
        settings=archiving_settings(repository, archive_timeout_s=60), env=repository.environment()
    )
    seed_shop(source.dsn(), users=1000)
    manifest = take_base_backup(repository, get_codec("zstd"), BaseBackupOptions(dsn=source.dsn()))
    with connect(source.dsn()) as conn:  # work after the backup: it must come back from WAL
        conn.execute(LATER_SESSIONS)
    switch_and_wait_archived(source.dsn(), repository)
    return LatestBackup(ReadOnlyStorage(repository), manifest, embedded=True)


@when(
    "it is restored into a throwaway server with WAL to the end of the archive",
    target_fixture="restored",
)
def restore_latest_with_wal(
    latest: LatestBackup, pg_backend: PostgresBackend, drill_record: ScenarioRecord
) -> RestoredServer:
    # No target: the end of the archive, or the end of the backup when no WAL follows it.
    restored = restore_into_new_server(latest.repository, latest.manifest.backup_id, pg_backend)
    record_restore(drill_record, restored)
    drill_record.expect(
        "restored from the latest complete base backup",
        latest.manifest.backup_id,
        restored.restore.backup_id,
    )
    return restored


TARGET_ENV = "DRILL_TARGET_DSN"
ATTACHED_RECOVERY_TIMEOUT_S = 4 * 3600  # the plan's RTO for a full restore


@dataclass(frozen=True)
class AttachedServer:
    """A server restored and started by someone else: the checklist only looks at it."""

    server: PostgresServer


@given("the restored PostgreSQL server to check", target_fixture="restored")
def restored_server_to_check(
    storage_factory: StorageFactory, pg_backend: PostgresBackend, drill_record: ScenarioRecord
) -> RestoredServer | AttachedServer:
    dsn = os.environ.get(TARGET_ENV)
    if dsn:
        server = AttachedPostgresServer(dsn)
        server.wait_until_ready()
        # A restored server accepts read-only connections while it still replays WAL: the
        # checklist looks at it once it has recovered (this only watches; nothing is changed).
        wait_for_connected_recovery(dsn, timeout=ATTACHED_RECOVERY_TIMEOUT_S)
        named = "the one named by DRILL_TARGET_DSN"
        drill_record.source(None, data="attached")
        drill_record.provenance["server"] = f"{describe(dsn)} ({named})"
        return AttachedServer(server)
    latest = latest_backup(storage_factory, pg_backend, drill_record)
    return restore_latest_with_wal(latest, pg_backend, drill_record)
