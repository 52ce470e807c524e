"""Steps about clusters with tablespaces and backups taken from a hot standby."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from psycopg import sql
from pytest_bdd import given, parsers, then, when

from backup_engine.drill.evidence import ScenarioRecord
from backup_engine.drill.recovery import RestoredServer
from backup_engine.drill.writer import HeartbeatWriter
from backup_engine.postgres.basebackup import BaseBackupOptions, take_base_backup
from backup_engine.postgres.binaries import find_pg_binaries
from backup_engine.postgres.connection import connect
from backup_engine.postgres.inspect import tablespace_locations
from backup_engine.postgres.manifest import BaseBackupManifest
from backup_engine.postgres.verify import VerifyResult, verify_base_backup
from backup_engine.postgres.walstream import BackgroundStream
from backup_engine.process import run
from backup_engine.servers import PostgresBackend, PostgresServer
from backup_engine.servers.base import tablespaces_beside
from backup_engine.storage import Storage

from .postgres_steps import DEFAULT_CODEC, Loss, destroy_server

REPLAY_TIMEOUT_S = 60


@pytest.fixture
def source_tablespaces() -> dict[str, Path]:
    """The tablespaces a scenario gave its server: name -> directory."""
    return {}


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


@given(
    parsers.parse(
        'table "{table}" with {rows:d} rows lives in tablespace "{space}" and its index in '
        'tablespace "{index_space}"'
    )
)
def table_in_tablespaces(
    source_server: PostgresServer,
    pg_backend: PostgresBackend,
    source_tablespaces: dict[str, Path],
    table: str,
    rows: int,
    space: str,
    index_space: str,
) -> None:
    """A table on a second disk and its index on a third: each tablespace a directory of its
    own outside the data directory, as production clusters have them."""
    with connect(source_server.dsn()) as conn:
        for name in (space, index_space):
            if name not in source_tablespaces:
                where = pg_backend.new_tablespace_dir(source_server, name)
                conn.execute(sql.SQL("CREATE TABLESPACE {} LOCATION {}").format(
                    sql.Identifier(name), sql.Literal(str(where))))  # fmt: skip
                source_tablespaces[name] = where
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} TABLESPACE {} AS SELECT g AS id, md5(g::text) AS body,"
                " now() AS at FROM generate_series(1, %s) AS g"
            ).format(sql.Identifier(table), sql.Identifier(space)),
            (rows,),
        )
        index = sql.SQL("CREATE INDEX {} ON {} (body) TABLESPACE {}")
        conn.execute(index.format(sql.Identifier(f"{table}_body"), sql.Identifier(table),
                                  sql.Identifier(index_space)))  # fmt: skip


@when("the server is destroyed with its tablespaces")
def destroy_with_tablespaces(
    source_server: PostgresServer,
    writers: list[HeartbeatWriter],
    streams: list[BackgroundStream],
    loss: Loss,
    source_tablespaces: dict[str, Path],
) -> None:
    """The server and every disk it used are lost: nothing to restore into but new ones."""
    destroy_server(source_server, writers, streams, loss)
    for where in source_tablespaces.values():
        shutil.rmtree(where, ignore_errors=True)
        assert not where.exists()


@then(parsers.parse('the restored server keeps tablespaces "{names}" in new directories'))
def restored_tablespaces(
    restored: RestoredServer,
    source_tablespaces: dict[str, Path],
    drill_record: ScenarioRecord,
    names: str,
) -> None:
    found = tablespace_locations(restored.server.dsn())
    drill_record.expect("tablespaces restored", sorted(_names(names)), sorted(found))
    for name, where in sorted(found.items()):
        moved = Path(where) != source_tablespaces.get(name) and Path(where).is_dir()
        drill_record.expect(f"tablespace {name} location", "a new directory", where, moved)


@when("the latest backup is verified with a trial restore", target_fixture="verified")
def trial_restore(repository: Storage) -> VerifyResult:
    return verify_base_backup(repository, "latest")


@then(parsers.parse('the trial restore checked the archives of tablespaces "{names}"'))
def trial_restore_checked(
    verified: VerifyResult,
    repository: Storage,
    backups_taken: list[BaseBackupManifest],
    drill_record: ScenarioRecord,
    names: str,
) -> None:
    manifest = backups_taken[-1]
    by_name = {t.name: t for t in manifest.tablespaces}
    drill_record.expect("tablespaces in the backup", sorted(_names(names)), sorted(by_name))
    for name in _names(names):
        key = manifest.file(by_name[name].archive).key
        drill_record.expect(f"{name}'s archive restored and checked", True,
                            key in verified.objects_checked)  # fmt: skip
    drill_record.expect("pg_verifybackup", "passed",
                        "passed" if verified.pg_verifybackup else "not run")  # fmt: skip


@given("a hot standby streaming from the server", target_fixture="standby_server")
def hot_standby(
    source_server: PostgresServer,
    pg_backend: PostgresBackend,
    source_tablespaces: dict[str, Path],
) -> PostgresServer:
    """pg_basebackup --write-recovery-conf into a new data directory, its tablespaces beside
    it (where the backend shows them to the server at the same path), started as a standby."""
    data_dir = pg_backend.new_data_dir()
    beside = tablespaces_beside(data_dir)
    mapping = [f"--tablespace-mapping={where}={beside / name}"
               for name, where in source_tablespaces.items()]  # fmt: skip
    pg_basebackup = find_pg_binaries().path("pg_basebackup")
    run([pg_basebackup, f"--dbname={source_server.dsn()}", f"--pgdata={data_dir}",
         "--write-recovery-conf", "--checkpoint=fast", "--no-sync", *mapping])  # fmt: skip
    # archive_mode stays as copied: a standby does not archive unless it is "always"
    return pg_backend.start_existing(data_dir, settings={"hot_standby": "on"})


@when("the standby has replayed everything the server wrote")
def standby_caught_up(source_server: PostgresServer, standby_server: PostgresServer) -> None:
    with connect(source_server.dsn()) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    lsn = str(row[0]) if row else "0/0"
    deadline = time.monotonic() + REPLAY_TIMEOUT_S
    with connect(standby_server.dsn()) as conn:
        query = "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn"
        while not (row := conn.execute(query, (lsn,)).fetchone()) or not row[0]:
            assert time.monotonic() < deadline, f"the standby did not replay up to {lsn}"
            time.sleep(0.05)


@when("a full backup is taken from the standby")
def backup_from_standby(
    repository: Storage, standby_server: PostgresServer, backups_taken: list[BaseBackupManifest]
) -> None:
    options = BaseBackupOptions(dsn=standby_server.dsn())
    backups_taken.append(take_base_backup(repository, DEFAULT_CODEC, options))


@then("the restored backup was taken from a standby of the same system")
def restored_from_standby(
    restored: RestoredServer,
    backups_taken: list[BaseBackupManifest],
    drill_record: ScenarioRecord,
) -> None:
    manifest = backups_taken[-1]
    drill_record.expect("backup restored", manifest.backup_id, restored.restore.backup_id)
    drill_record.expect("taken from a standby", True, manifest.from_standby)
    with connect(restored.server.dsn()) as conn:
        row = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
    drill_record.expect("system identifier", manifest.system_identifier, row[0] if row else None)
