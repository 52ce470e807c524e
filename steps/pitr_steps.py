"""Steps for point-in-time recovery: archiving servers, a steady writer, markers, bad changes,
targeted restores and the restores that must be refused."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from psycopg import sql
from pytest_bdd import given, parsers, then, when

from backup_engine.codecs import get_codec
from backup_engine.drill.evidence import ScenarioRecord
from backup_engine.drill.markers import Marker, marker_exists, write_marker
from backup_engine.drill.recovery import (
    RestoredServer,
    record_restore,
    recovery_from,
    restore_into_new_server,
)
from backup_engine.drill.seed import seed_shop
from backup_engine.drill.writer import HeartbeatWriter
from backup_engine.errors import BackupEngineError
from backup_engine.postgres.archiving import switch_and_wait_archived
from backup_engine.postgres.connection import connect
from backup_engine.postgres.identifiers import parse_table_name
from backup_engine.postgres.inspect import TableFingerprint, table_fingerprint
from backup_engine.postgres.manifest import BaseBackupManifest
from backup_engine.postgres.recovery_config import tool_command
from backup_engine.postgres.restore import restore_base_backup
from backup_engine.postgres.targets import RecoveryTarget
from backup_engine.postgres.wal import WAL_PREFIX
from backup_engine.postgres.walstream import BackgroundStream, WalStreamer
from backup_engine.servers import PostgresBackend, PostgresServer
from backup_engine.storage import Storage


@pytest.fixture
def markers() -> dict[str, Marker]:
    return {}


def archiving_settings(repository: Storage, archive_timeout_s: int) -> dict[str, str]:
    command = tool_command(["pg", "wal-push", "%p"], repo_url=repository.url)
    return {
        "archive_mode": "on",
        "archive_command": command,
        "archive_timeout": str(archive_timeout_s),
    }


def start_archiving_server(pg_backend: PostgresBackend, repository: Storage, *,
                           archive_timeout_s: int, env: dict[str, str] | None = None,
                           ) -> PostgresServer:  # fmt: skip
    """A server whose archive_command pushes to `repository` (its credentials, and `env`, in
    the server's environment)."""
    settings = archiving_settings(repository, archive_timeout_s=archive_timeout_s)
    return pg_backend.create(settings=settings, env={**repository.environment(), **(env or {})})


@given(
    "a running PostgreSQL server archiving WAL to the repository", target_fixture="source_server"
)
def archiving_server(pg_backend: PostgresBackend, repository: Storage) -> PostgresServer:
    return start_archiving_server(pg_backend, repository, archive_timeout_s=60)


@given(
    parsers.parse(
        "a running PostgreSQL server archiving WAL to the repository "
        "with archive_timeout of {seconds:d} seconds"
    ),
    target_fixture="source_server",
)
def archiving_server_with_timeout(
    pg_backend: PostgresBackend, repository: Storage, seconds: int
) -> PostgresServer:
    return start_archiving_server(pg_backend, repository, archive_timeout_s=seconds)


@given(
    parsers.parse(
        "WAL is streamed to the repository with the open segment shipped every {seconds:d} second"
    )
)
def stream_wal(
    source_server: PostgresServer,
    repository: Storage,
    streams: list[BackgroundStream],
    tmp_path: Path,
    seconds: int,
) -> None:
    streamer = WalStreamer(
        repository,
        dsn=source_server.dsn(),
        slot="drill",
        spool_dir=tmp_path / "wal-spool",
        codec=get_codec("zstd"),
        partial_interval=seconds,
    )
    streamer.create_slot()
    streams.append(BackgroundStream(streamer).start())


@given(parsers.parse("the shop schema with {users:d} users"))
def shop_schema(source_server: PostgresServer, users: int) -> None:
    seed_shop(source_server.dsn(), users=users)


@given(parsers.parse("a writer commits a timestamped row every {ms:d} milliseconds"))
def steady_writer(source_server: PostgresServer, writers: list[HeartbeatWriter], ms: int) -> None:
    writers.append(HeartbeatWriter(source_server.dsn(), ms / 1000).start())


@when(parsers.parse("the writer has run for {seconds:d} seconds"))
def writer_runs(writers: list[HeartbeatWriter], seconds: int) -> None:
    time.sleep(seconds)
    assert writers and writers[0].rows > 0 and writers[0].error is None


@when(parsers.parse('marker "{name}" is committed'))
def commit_marker(
    source_server: PostgresServer, repository: Storage, markers: dict[str, Marker], name: str
) -> None:
    markers[name] = write_marker(source_server.dsn(), repository, name)


@when("the orders table is recorded", target_fixture="recorded_orders")
def record_orders(source_server: PostgresServer) -> TableFingerprint:
    return table_fingerprint(source_server.dsn(), "public.orders")


@when(parsers.parse("a bad change wipes the {table} table"))
def wipe_table(source_server: PostgresServer, table: str) -> None:
    with connect(source_server.dsn()) as conn:
        # Like a mistaken DELETE run by hand: foreign-key actions do not fire, so rows that
        # referenced the wiped ones stay (ON DELETE CASCADE would have taken them along).
        conn.execute("SET session_replication_role = replica")
        conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(*parse_table_name(table))))


@when("the WAL is archived")
def archive_now(source_server: PostgresServer, repository: Storage) -> None:
    # Generous: after months of simulated backups the archiver has hundreds of segments to
    # push, one wal-push process each (~0.4 s apiece into S3 here).
    switch_and_wait_archived(source_server.dsn(), repository, timeout=600)


@when(
    parsers.parse('the database is restored to the {kind} of marker "{name}"'),
    target_fixture="restored",
)
def restore_to_marker(
    repository: Storage,
    pg_backend: PostgresBackend,
    markers: dict[str, Marker],
    drill_record: ScenarioRecord,
    kind: str,
    name: str,
) -> RestoredServer:
    return restored_to(repository, pg_backend, drill_record, markers[name].target(kind))


def restored_to(
    repository: Storage,
    pg_backend: PostgresBackend,
    drill_record: ScenarioRecord,
    target: RecoveryTarget,
    *,
    archive_mode: str = "off",
) -> RestoredServer:
    """A new server recovered to `target` (the backup chosen for it), recorded as evidence."""
    restored = restore_into_new_server(
        repository, "auto", pg_backend, target=target, archive_mode=archive_mode
    )
    record_restore(drill_record, restored)
    return restored


@when("the database is restored to the latest point", target_fixture="restored")
def restore_to_latest(
    repository: Storage, pg_backend: PostgresBackend, drill_record: ScenarioRecord
) -> RestoredServer:
    return restored_to(repository, pg_backend, drill_record, RecoveryTarget("latest"))


@then(parsers.parse('marker "{name}" is present'))
def marker_present(restored: RestoredServer, drill_record: ScenarioRecord, name: str) -> None:
    present = marker_exists(restored.server.dsn(), name)
    drill_record.expect(f"marker {name!r}", "present", "present" if present else "absent")


@then("the orders table is as recorded")
def orders_as_recorded(
    restored: RestoredServer, recorded_orders: TableFingerprint, drill_record: ScenarioRecord
) -> None:
    actual = table_fingerprint(restored.server.dsn(), "public.orders")
    drill_record.expect("public.orders: rows and checksum", str(recorded_orders), str(actual))


@then("recovery ended on a new timeline")
def promoted(
    restored: RestoredServer, backups_taken: list[BaseBackupManifest], drill_record: ScenarioRecord
) -> None:
    outcome = restored.recovery
    newer = outcome.timeline is not None and outcome.timeline > backups_taken[-1].timeline
    drill_record.expect(
        "recovery ended", f"promoted on a timeline after {backups_taken[-1].timeline}",
        f"{outcome.state} on timeline {outcome.timeline}", outcome.state == "promoted" and newer,
    )  # fmt: skip


# --- restores that must be refused ------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    error: BackupEngineError | None
    target_dir: Path
    before: list[str]  # what the target directory held before the attempt
    live_tables: dict[str, TableFingerprint] | None = None  # a live server's data before it


SHOP_TABLES = ("public.users", "public.sessions", "public.orders")


def _attempt(
    repository: Storage, source: PostgresServer, target_dir: Path, target: RecoveryTarget
) -> Attempt:
    before = sorted(p.name for p in target_dir.iterdir())
    live = {t: table_fingerprint(source.dsn(), t) for t in SHOP_TABLES}
    try:
        restore_base_backup(
            repository,
            "auto",
            target_dir,
            force=True,
            recovery=recovery_from(repository, target),
        )
    except BackupEngineError as exc:
        return Attempt(exc, target_dir, before, live)
    return Attempt(None, target_dir, before, live)


@when(
    parsers.parse(
        "a restore over the live server to {hours:d} hour before the first backup is attempted"
    ),
    target_fixture="attempt",
)
def attempt_too_early(
    repository: Storage,
    source_server: PostgresServer,
    backups_taken: list[BaseBackupManifest],
    hours: int,
) -> Attempt:
    moment = backups_taken[0].start_time - timedelta(hours=hours)
    target = RecoveryTarget("time", time=moment)
    return _attempt(repository, source_server, source_server.data_dir, target)


@when("a restore over the live server to the latest point is attempted", target_fixture="attempt")
def attempt_latest(repository: Storage, source_server: PostgresServer) -> Attempt:
    return _attempt(repository, source_server, source_server.data_dir, RecoveryTarget("latest"))


@when("an archived WAL segment after the backup is deleted from the repository")
def delete_segment(repository: Storage, backups_taken: list[BaseBackupManifest]) -> None:
    after_backup = [
        info.key
        for info in repository.list(WAL_PREFIX)
        if info.key[len(WAL_PREFIX) :][:24] > backups_taken[-1].stop_wal_file
        and "." not in info.key[len(WAL_PREFIX) :].removesuffix(".zst")
    ]
    assert after_backup, "no archived segment after the backup to delete"
    repository.delete(after_backup[0])


@then(parsers.parse('the restore is refused with "{text}"'))
def refused(attempt: Attempt, drill_record: ScenarioRecord, text: str) -> None:
    found = str(attempt.error) if attempt.error else "not refused"
    drill_record.expect("restore refused", f"refused, saying {text!r}", found, text in found)


@then("the live server still runs with its data untouched")
def live_untouched(
    attempt: Attempt, source_server: PostgresServer, drill_record: ScenarioRecord
) -> None:
    after = sorted(p.name for p in attempt.target_dir.iterdir())
    drill_record.expect("files of the live data directory", attempt.before, after)
    drill_record.expect("live server accepts connections", True, source_server.is_ready())
    assert attempt.live_tables is not None
    for table, before in attempt.live_tables.items():
        now = table_fingerprint(source_server.dsn(), table)
        drill_record.expect(f"live {table}", str(before), str(now))
