"""Steps about a second repository (3-2-1): WAL and backups written to both, one repository
lost whole, the database restored from the other."""

from __future__ import annotations

import shlex

from pytest_bdd import given, when

from backup_engine.drill.evidence import ScenarioRecord
from backup_engine.drill.recovery import RestoredServer, record_restore, restore_into_new_server
from backup_engine.postgres.archiving import switch_and_wait_archived
from backup_engine.postgres.basebackup import BaseBackupOptions, take_base_backup
from backup_engine.postgres.manifest import BaseBackupManifest
from backup_engine.postgres.recovery_config import tool_argv
from backup_engine.repositories import env_of
from backup_engine.servers import PostgresBackend, PostgresServer
from backup_engine.storage import Storage
from backup_engine.storage.mirror import MirroredStorage

from . import StorageFactory
from .postgres_steps import DEFAULT_CODEC


@given("a second, empty backup repository", target_fixture="second_repository")
def second_repository(storage_factory: StorageFactory) -> Storage:
    return storage_factory()


@given(
    "a running PostgreSQL server archiving WAL to both repositories",
    target_fixture="source_server",
)
def archiving_to_both(
    pg_backend: PostgresBackend, repository: Storage, second_repository: Storage
) -> PostgresServer:
    """archive_command is the tool with no --repo: both repositories come from the server's
    environment, as an operator's [repository] and [repository.2] would."""
    env = repository.environment()
    env.update({
        "BACKUP_ENGINE_REPOSITORY": repository.url,
        env_of("url"): second_repository.url,
        **({env_of("endpoint_url"): env["AWS_ENDPOINT_URL"]} if "AWS_ENDPOINT_URL" in env else {}),
    })  # fmt: skip
    command = " ".join(shlex.quote(word) for word in tool_argv()) + " pg wal-push %p"
    settings = {"archive_mode": "on", "archive_command": command, "archive_timeout": "60"}
    return pg_backend.create(settings=settings, env=env)


@when("a full backup is taken into both repositories")
def backup_to_both(
    repository: Storage,
    second_repository: Storage,
    source_server: PostgresServer,
    backups_taken: list[BaseBackupManifest],
) -> None:
    both = MirroredStorage([repository, second_repository])  # one stream, written to each
    backups_taken.append(take_base_backup(both, DEFAULT_CODEC,
                                          BaseBackupOptions(dsn=source_server.dsn())))  # fmt: skip


@when("the WAL is archived in both repositories")
def archived_in_both(source_server: PostgresServer, second_repository: Storage) -> None:
    # archive_command stores a segment in repository 1, then 2: once 2 holds it, both do
    switch_and_wait_archived(source_server.dsn(), second_repository, timeout=120)


@when("the first repository is deleted whole")
def delete_first(repository: Storage, drill_record: ScenarioRecord) -> None:
    keys = [info.key for info in repository.list("")]
    for key in keys:
        repository.delete(key)
    left = sum(1 for _ in repository.list(""))
    drill_record.expect("objects left in the first repository", 0, left)


@when(
    "the latest backup is restored from the second repository into a new server",
    target_fixture="restored",
)
def restore_from_second(
    second_repository: Storage, pg_backend: PostgresBackend, drill_record: ScenarioRecord
) -> RestoredServer:
    restored = restore_into_new_server(second_repository, "latest", pg_backend)
    record_restore(drill_record, restored)
    return restored
