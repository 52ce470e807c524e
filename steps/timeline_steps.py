"""Steps for restores across timelines: a restored copy promoted as the new primary, restores
that must be refused (ambiguous targets, broken timelines), and recoveries that fail loudly."""

from __future__ import annotations

import time
from dataclasses import replace

from pytest_bdd import parsers, then, when

from backup_engine.drill.evidence import ScenarioRecord
from backup_engine.drill.markers import Marker, marker_exists
from backup_engine.drill.recovery import (
    RestoredServer,
    recovery_from,
    restore_into_new_server,
)
from backup_engine.errors import BackupEngineError
from backup_engine.postgres.archiving import switch_and_wait_archived
from backup_engine.postgres.connection import connect
from backup_engine.postgres.manifest import BaseBackupManifest
from backup_engine.postgres.recovery import RecoveryFailed, wait_for_recovery
from backup_engine.postgres.restore import restore_base_backup
from backup_engine.postgres.targets import RecoveryTarget
from backup_engine.postgres.timelines import history_name, read_timeline_tree
from backup_engine.postgres.wal import WAL_PREFIX
from backup_engine.servers import PostgresBackend, PostgresServer
from backup_engine.storage import Storage

from .pitr_steps import Attempt, restored_to

SEG = 16 * 1024 * 1024
RECOVERY_TIMEOUT_S = 600  # a failed recovery must end long before; never a day-long wait


def _timelines(repository: Storage) -> list[int]:
    return read_timeline_tree(repository, SEG).with_wal


@when(
    parsers.parse('the database is restored to the {kind} of marker "{name}" as the new primary'),
    target_fixture="source_server",
)
def restore_as_new_primary(
    repository: Storage,
    pg_backend: PostgresBackend,
    markers: dict[str, Marker],
    drill_record: ScenarioRecord,
    kind: str,
    name: str,
) -> PostgresServer:
    """The operator's recovery after an incident: the restored server becomes production and
    archives into the same repository (--archive-mode preserve), on its new timeline."""
    target = markers[name].target(kind)
    restored = restored_to(repository, pg_backend, drill_record, target, archive_mode="preserve")
    assert restored.recovery.state == "promoted", restored.recovery
    return restored.server


@when("the latest backup is restored into a new server as a new primary", target_fixture="copy")
def restore_copy_as_primary(repository: Storage, pg_backend: PostgresBackend) -> RestoredServer:
    return restore_into_new_server(repository, "latest", pg_backend, archive_mode="preserve")


@when("the copy's WAL is archived")
def archive_copy(copy: RestoredServer, repository: Storage) -> None:
    switch_and_wait_archived(copy.server.dsn(), repository, timeout=120)


@when(
    parsers.parse('the database is restored to the {kind} of marker "{name}" on timeline {tli:d}'),
    target_fixture="restored",
)
def restore_on_timeline(
    repository: Storage,
    pg_backend: PostgresBackend,
    markers: dict[str, Marker],
    drill_record: ScenarioRecord,
    kind: str,
    name: str,
    tli: int,
) -> RestoredServer:
    target = replace(markers[name].target(kind), timeline=str(tli))
    return restored_to(repository, pg_backend, drill_record, target)


@when(
    parsers.parse("the database is restored to the latest point of timeline {tli:d}"),
    target_fixture="restored",
)
def restore_latest_of(
    repository: Storage, pg_backend: PostgresBackend, drill_record: ScenarioRecord, tli: int
) -> RestoredServer:
    target = RecoveryTarget("latest", timeline=str(tli))
    return restored_to(repository, pg_backend, drill_record, target)


def _attempt_fresh(
    repository: Storage, pg_backend: PostgresBackend, target: RecoveryTarget | None
) -> Attempt:
    directory = pg_backend.new_data_dir()
    try:
        restore_base_backup(
            repository, "auto", directory, recovery=recovery_from(repository, target)
        )
    except BackupEngineError as exc:
        return Attempt(exc, directory, [])
    return Attempt(None, directory, [])


@when("a restore to the latest point is attempted", target_fixture="attempt")
def attempt_latest_fresh(repository: Storage, pg_backend: PostgresBackend) -> Attempt:
    return _attempt_fresh(repository, pg_backend, None)


@when(
    parsers.parse('a restore to the {kind} of marker "{name}" is attempted'),
    target_fixture="attempt",
)
def attempt_marker(
    repository: Storage,
    pg_backend: PostgresBackend,
    markers: dict[str, Marker],
    kind: str,
    name: str,
) -> Attempt:
    return _attempt_fresh(repository, pg_backend, markers[name].target(kind))


@when(parsers.parse("the history file of timeline {tli:d} is deleted from the repository"))
def delete_history(repository: Storage, tli: int) -> None:
    keys = [i.key for i in repository.list(f"{WAL_PREFIX}{history_name(tli)}")]
    assert keys, f"no {history_name(tli)} in the repository"
    for key in keys:
        repository.delete(key)


@when(
    "a restore to a transaction id that was never assigned is waited for",
    target_fixture="failed_recovery",
)
def wait_unreachable_target(
    repository: Storage,
    pg_backend: PostgresBackend,
    backups_taken: list[BaseBackupManifest],
    drill_record: ScenarioRecord,
) -> RecoveryFailed:
    next_xid = backups_taken[-1].next_xid
    assert next_xid is not None
    target = RecoveryTarget("xid", xid=next_xid + 50_000_000)
    directory = pg_backend.new_data_dir()
    restore_base_backup(repository, "auto", directory, recovery=recovery_from(repository, target))
    server = pg_backend.start_existing(directory, env=repository.environment(), wait=False)
    started = time.monotonic()
    failed: RecoveryFailed | None = None
    try:
        wait_for_recovery(server, timeout=RECOVERY_TIMEOUT_S)
    except RecoveryFailed as exc:
        failed = exc
    waited = f"{time.monotonic() - started:.1f} s"
    found = f"stopped after {waited}" if failed else f"recovered in {waited}"
    drill_record.expect("recovery to an unreachable target", "the server stops", found,
                        failed is not None)  # fmt: skip
    assert failed is not None  # for the type checker: expect() raised otherwise
    return failed


@then(parsers.parse('recovery fails with "{text}"'))
def recovery_fails_with(
    failed_recovery: RecoveryFailed, drill_record: ScenarioRecord, text: str
) -> None:
    found = str(failed_recovery)
    drill_record.expect("recovery stopped with PostgreSQL's reason", text, found, text in found)


@then("the refusal is an integrity failure")
def refusal_is_integrity(attempt: Attempt, drill_record: ScenarioRecord) -> None:
    code = attempt.error.exit_code if attempt.error else None
    drill_record.expect("exit code of the refusal", 4, code)


@then(parsers.parse('the repository holds WAL of timelines "{expected}"'))
def repository_timelines(repository: Storage, drill_record: ScenarioRecord, expected: str) -> None:
    wanted = [int(t) for t in expected.split(",")]
    drill_record.expect("timelines with archived WAL", wanted, _timelines(repository))


@then("the copy does not archive")
def copy_does_not_archive(
    restored: RestoredServer, repository: Storage, drill_record: ScenarioRecord
) -> None:
    with connect(restored.server.dsn()) as conn:
        mode = conn.execute("SHOW archive_mode").fetchone()
        conn.execute("SELECT pg_switch_wal()")
    drill_record.expect("archive_mode of the restored copy", "off", mode[0] if mode else None)
    time.sleep(2)  # an archiver, were there one, pushes a finished segment within a second
    drill_record.expect("timelines in the source's repository", [1], _timelines(repository))


@then(parsers.parse('marker "{name}" is absent'))
def marker_absent(restored: RestoredServer, drill_record: ScenarioRecord, name: str) -> None:
    present = marker_exists(restored.server.dsn(), name)
    drill_record.expect(f"marker {name!r}", "absent", "present" if present else "absent")


@then("no recovery setting from an earlier restore was left in the restored configuration")
def nothing_left(restored: RestoredServer, drill_record: ScenarioRecord) -> None:
    config = restored.restore.config
    removed = [r for r in (config.removed if config else []) if "recovery_target_time = '2" in r]
    # Without the earlier target in the backup, the scenario would prove nothing.
    checks: list[tuple[str, object, object, bool]] = [
        ("earlier recovery_target_time removed from the copy", ">= 1 setting", len(removed),
         bool(removed))
    ]  # fmt: skip
    with connect(restored.server.dsn()) as conn:
        for name in ("recovery_target_time", "recovery_target_lsn", "recovery_target_name",
                     "recovery_target_xid", "recovery_target"):  # fmt: skip
            row = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
            value = row[0] if row else None
            checks.append((name, "unset", repr(value), value == ""))
    drill_record.expect_all(checks)
