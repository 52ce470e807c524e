"""Steps about PostgreSQL servers, their data, backups and restores."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from pytest_bdd import given, parsers, then, when

from backup_engine.codecs import get_codec
from backup_engine.drill.evidence import ScenarioRecord
from backup_engine.drill.recovery import RestoredServer, record_restore, restore_into_new_server
from backup_engine.drill.seed import seed_shop
from backup_engine.drill.writer import HeartbeatWriter
from backup_engine.errors import StorageUnreachable
from backup_engine.postgres.basebackup import BaseBackupOptions, take_base_backup
from backup_engine.postgres.connection import connect
from backup_engine.postgres.inspect import TableFingerprint, table_fingerprints
from backup_engine.postgres.manifest import BaseBackupManifest
from backup_engine.postgres.walstream import BackgroundStream
from backup_engine.servers import PostgresBackend, PostgresServer
from backup_engine.storage import Storage
from backup_engine.storage.faults import FailingWrites

Fingerprints = dict[str, TableFingerprint]
DEFAULT_CODEC = get_codec("zstd")


@given(
    parsers.parse("a running PostgreSQL server with the shop schema and {users:d} users"),
    target_fixture="source_server",
)
def shop_server(pg_backend: PostgresBackend, users: int) -> PostgresServer:
    server = pg_backend.create()
    seed_shop(server.dsn(), users=users)
    return server


@given(
    "the row count and content checksum of every table are recorded",
    target_fixture="recorded_tables",
)
@when(
    "the row count and content checksum of every table are recorded",
    target_fixture="recorded_tables",
)
def record_tables(source_server: PostgresServer) -> Fingerprints:
    return table_fingerprints(source_server.dsn())


@given(parsers.parse("the server holds {mb:d} MB of incompressible data"))
def incompressible(source_server: PostgresServer, mb: int) -> None:
    """Random bytes: the backup stays as big compressed, so it needs a multipart upload."""
    with connect(source_server.dsn()) as conn:
        conn.execute(
            "CREATE TABLE attachments AS SELECT i AS id,"
            " decode((SELECT string_agg(md5(random()::text || i || j), '')"
            "         FROM generate_series(1, 64) AS j), 'hex') AS body"
            " FROM generate_series(1, %s) AS i",
            (mb * 1024,),
        )


@when(parsers.parse("{count:d} more users sign up"))
def more_users(source_server: PostgresServer, count: int) -> None:
    with connect(source_server.dsn()) as conn:
        conn.execute(
            "INSERT INTO users (email, name, created_at)"  # numbered on: the step may repeat
            " SELECT 'late' || n || '@example.com', 'Late ' || n, now()"
            " FROM (SELECT i + (SELECT count(*) FROM users WHERE email LIKE 'late%%') AS n"
            "       FROM generate_series(1, %s) AS i) AS numbered",
            (count,),
        )


@dataclass
class Loss:
    """When the primary was lost: the reference point for a measured RPO."""

    at: datetime | None = None


@pytest.fixture
def loss() -> Loss:
    return Loss()


@pytest.fixture
def writers() -> Iterator[list[HeartbeatWriter]]:
    """Background writers a scenario started; stopped when it ends, whatever happened."""
    started: list[HeartbeatWriter] = []
    yield started
    for writer in started:
        writer.stop()


@pytest.fixture
def streams() -> Iterator[list[BackgroundStream]]:
    """WAL streams a scenario started; stopped (and flushed) when it ends."""
    started: list[BackgroundStream] = []
    yield started
    for stream in started:
        stream.stop()


@pytest.fixture
def backups_taken() -> list[BaseBackupManifest]:
    """Every backup a scenario took, in order."""
    return []


@given("a full backup is taken")
@when("a full backup is taken")
def full_backup(
    repository: Storage, source_server: PostgresServer, backups_taken: list[BaseBackupManifest]
) -> None:
    options = BaseBackupOptions(dsn=source_server.dsn())
    backups_taken.append(take_base_backup(repository, DEFAULT_CODEC, options))


@when("a full backup is interrupted before its manifest is written")
def interrupted_backup(repository: Storage, source_server: PostgresServer) -> None:
    failing = FailingWrites(repository, lambda key: key.endswith("/backup.json"))
    with pytest.raises(StorageUnreachable):
        take_base_backup(failing, DEFAULT_CODEC, BaseBackupOptions(dsn=source_server.dsn()))


@when("the server is destroyed")
def destroy_server(
    source_server: PostgresServer,
    writers: list[HeartbeatWriter],
    streams: list[BackgroundStream],
    loss: Loss,
) -> None:
    source_server.destroy()
    # Taken once the server is gone, so the measured RPO is an upper bound, never flattering.
    loss.at = datetime.now(UTC)
    for writer in writers:
        writer.stop()
    while streams:  # what pg_receivewal got before the loss still reaches the repository
        streams.pop().stop()
    assert not source_server.data_dir.exists()


@when("the latest backup is restored into a new server", target_fixture="restored")
def restore_latest(
    repository: Storage, pg_backend: PostgresBackend, drill_record: ScenarioRecord
) -> RestoredServer:
    restored = restore_into_new_server(repository, "latest", pg_backend)
    record_restore(drill_record, restored)
    return restored


@then("the restored server accepts connections")
def accepts_connections(restored: RestoredServer, drill_record: ScenarioRecord) -> None:
    ready = restored.server.is_ready()
    drill_record.expect("pg_isready", "accepting connections", "accepting" if ready else "no",
                        ready)  # fmt: skip
    with connect(restored.server.dsn()) as conn:
        row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    drill_record.expect("in recovery", False, row[0] if row else None)


@then("every table has the same row count and content checksum as before the loss")
def same_tables(
    restored: RestoredServer, recorded_tables: Fingerprints, drill_record: ScenarioRecord
) -> None:
    actual = table_fingerprints(restored.server.dsn())
    checks = []
    for table in sorted(set(actual) | set(recorded_tables)):
        before, after = recorded_tables.get(table), actual.get(table)
        checks.append((f"{table}: rows and content checksum", _shown(before), _shown(after),
                       before == after))  # fmt: skip
    drill_record.expect_all(checks)


@then(parsers.parse('the restored tables "{names}" are as recorded'))
def some_tables(
    restored: RestoredServer, recorded_tables: Fingerprints, drill_record: ScenarioRecord,
    names: str,
) -> None:  # fmt: skip
    """Only these tables (others, like the markers of a PITR drill, changed on purpose)."""
    actual = table_fingerprints(restored.server.dsn())
    for name in (n.strip() for n in names.split(",")):
        table = name if "." in name else f"public.{name}"
        before, after = recorded_tables.get(table), actual.get(table)
        drill_record.expect(f"{table}: rows and content checksum", _shown(before), _shown(after))


def _shown(fingerprint: TableFingerprint | None) -> str:
    return (
        "absent" if fingerprint is None else f"{fingerprint.rows} rows, md5 {fingerprint.checksum}"
    )


@then(parsers.parse("the restored backup is the {ordinal} one taken"))
def restored_backup_is(
    restored: RestoredServer,
    backups_taken: list[BaseBackupManifest],
    drill_record: ScenarioRecord,
    ordinal: str,
) -> None:
    index = {"first": 0, "second": 1, "third": 2, "fourth": 3, "last": -1}[ordinal]
    drill_record.expect("backup restored", backups_taken[index].backup_id,
                        restored.restore.backup_id)  # fmt: skip
