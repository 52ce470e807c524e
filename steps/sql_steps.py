"""Generic steps for any application's database: its own SQL, its own schema, its own damage,
its own checks. A recovery scenario for an application that is not the drill's shop schema is
Gherkin only (see features/app_*.feature and the README's "Write your own scenario")."""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from pytest_bdd import given, parsers, then, when

from backup_engine.drill.evidence import ScenarioRecord
from backup_engine.drill.pytest_plugin import FEATURE_FILE
from backup_engine.drill.recovery import RestoredServer
from backup_engine.postgres.binaries import find_pg_binaries
from backup_engine.postgres.connection import connect
from backup_engine.postgres.identifiers import parse_table_name, qualified
from backup_engine.postgres.inspect import TableFingerprint, table_fingerprint, table_fingerprints
from backup_engine.process import run
from backup_engine.servers import PostgresBackend, PostgresServer, SmallDiskUnavailable
from backup_engine.storage import Storage

from .pitr_steps import archiving_settings


@dataclass(frozen=True)
class RecordedQuery:
    database: str
    query: str
    rows: list[tuple[Any, ...]]


@pytest.fixture
def recorded_queries() -> dict[str, RecordedQuery]:
    return {}


@pytest.fixture
def recorded_databases() -> dict[str, dict[str, TableFingerprint]]:
    return {}


def _feature_dir(request: pytest.FixtureRequest) -> Path:
    """Where the running scenario's .feature file is: paths in steps are relative to it."""
    feature = request.node.stash.get(FEATURE_FILE, None)
    return Path(feature).parent if feature else Path.cwd()


def _ensure_database(server: PostgresServer, database: str) -> None:
    with connect(server.dsn()) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        if exists.fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def _run_sql(server: PostgresServer, database: str, text: str) -> None:
    with connect(server.dsn(database)) as conn:
        conn.execute(text.encode())  # several statements at once, as psql -c would


@given(
    parsers.parse(
        "a running PostgreSQL server with data checksums archiving WAL to the repository"
    ),
    target_fixture="source_server",
)
def checksummed_server(pg_backend: PostgresBackend, repository: Storage) -> PostgresServer:
    """A cluster initialised with data checksums: a damaged page is reported, never read."""
    settings = archiving_settings(repository, archive_timeout_s=60)
    return pg_backend.create(settings=settings, env=repository.environment(), checksums=True)


@given(
    parsers.parse(
        "a running PostgreSQL server on a {mb:d} MB disk archiving WAL to the repository"
    ),
    target_fixture="source_server",
)
def server_on_small_disk(
    pg_backend: PostgresBackend, repository: Storage, mb: int
) -> PostgresServer:
    """Its data directory on a disk of its own of that size (a tmpfs: needs root), so that
    filling it fills nothing else. A fresh cluster takes about 40 MB."""
    settings = archiving_settings(repository, archive_timeout_s=60)
    try:
        return pg_backend.create(settings=settings, env=repository.environment(), disk_mb=mb)
    except SmallDiskUnavailable as exc:
        pytest.skip(f"this machine cannot give the server a disk of its own: {exc}")


@given(parsers.parse('the database "{database}" has:'))
@when(parsers.parse('the database "{database}" has:'))
def database_has(source_server: PostgresServer, database: str, docstring: str) -> None:
    """Run the SQL below on the live server, in that database (created if it does not exist)."""
    _ensure_database(source_server, database)
    _run_sql(source_server, database, docstring)


@given(parsers.parse('"{path}" is loaded into the database "{database}"'))
def load_file(
    source_server: PostgresServer, request: pytest.FixtureRequest, path: str, database: str
) -> None:
    """A schema or data file (relative to the feature file): SQL with psql, a pg_dump custom
    or directory archive with pg_restore."""
    file = Path(path) if Path(path).is_absolute() else _feature_dir(request) / path
    _ensure_database(source_server, database)
    binaries = find_pg_binaries()
    if file.suffix == ".sql":
        run([binaries.path("psql"), "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1",
             f"--dbname={source_server.dsn(database)}", f"--file={file}"])  # fmt: skip
    else:
        run([binaries.path("pg_restore"), "--no-owner", "--exit-on-error",
             f"--dbname={source_server.dsn(database)}", str(file)])  # fmt: skip


@given(parsers.parse('{count:d} rows are added to "{table}" of the database "{database}" from:'))
@when(parsers.parse('{count:d} rows are added to "{table}" of the database "{database}" from:'))
def rows_from_template(
    source_server: PostgresServer, count: int, table: str, database: str, docstring: str
) -> None:
    """The SELECT below, run once per n = 1..count, its columns inserted as a row:
    `SELECT n, 'customer ' || n, n * 9.99`."""
    target = sql.Identifier(*parse_table_name(table))
    statement = sql.SQL(
        "INSERT INTO {} SELECT r.* FROM generate_series(1, %s) AS n, LATERAL ({}) r"
    )
    with connect(source_server.dsn(database)) as conn:
        template = sql.SQL(docstring.strip().replace("%", "%%"))  # its own % are operators
        conn.execute(statement.format(target, template), (count,))


@when(parsers.parse('this bad change runs on the database "{database}":'))
def bad_change(source_server: PostgresServer, database: str, docstring: str) -> None:
    """Any SQL as the damage: an UPDATE without WHERE, a TRUNCATE, a migration that fails
    half-way (an error here is part of the damage, not a failure of the step)."""
    with contextlib.suppress(psycopg.Error):
        _run_sql(source_server, database, docstring)


@then(parsers.parse('this statement on the database "{database}" fails with "{text}":'))
def statement_fails(
    source_server: PostgresServer,
    drill_record: ScenarioRecord,
    database: str,
    text: str,
    docstring: str,
) -> None:
    """The SQL below, run on the live server, must fail with an error containing the text."""
    try:
        _run_sql(source_server, database, docstring)
        found = "succeeded"
    except psycopg.Error as exc:
        found = str(exc).strip().splitlines()[0]
    drill_record.expect("the statement", f"fails with {text!r}", found, text in found)


@when(
    parsers.parse('the result of this query on the database "{database}" is recorded as "{name}":')
)
def record_query(
    source_server: PostgresServer,
    recorded_queries: dict[str, RecordedQuery],
    database: str,
    name: str,
    docstring: str,
) -> None:
    recorded_queries[name] = RecordedQuery(database, docstring, _rows(source_server.dsn(database),
                                                                      docstring))  # fmt: skip


@then(parsers.parse('the query "{name}" returns what was recorded'))
def query_as_recorded(
    restored: RestoredServer,
    recorded_queries: dict[str, RecordedQuery],
    drill_record: ScenarioRecord,
    name: str,
) -> None:
    recorded = recorded_queries[name]
    rows = _rows(restored.server.dsn(recorded.database), recorded.query)
    drill_record.expect(f"query {name!r}", _shown(recorded.rows), _shown(rows),
                        rows == recorded.rows)  # fmt: skip


def _rows(dsn: str, query: str) -> list[tuple[Any, ...]]:
    with connect(dsn) as conn:
        return [tuple(r) for r in conn.execute(query.encode()).fetchall()]


def _shown(rows: list[tuple[Any, ...]]) -> str:
    text = "; ".join(", ".join(str(v) for v in row) for row in rows[:5])
    return f"{len(rows)} rows: {text}" + (" ..." if len(rows) > 5 else "")


@given(parsers.parse('every table of the database "{database}" is recorded'))
@when(parsers.parse('every table of the database "{database}" is recorded'))
def record_database(
    source_server: PostgresServer,
    recorded_databases: dict[str, dict[str, TableFingerprint]],
    database: str,
) -> None:
    recorded_databases[database] = table_fingerprints(source_server.dsn(database))


@then(parsers.parse('every table of the database "{database}" is as recorded'))
def database_as_recorded(
    restored: RestoredServer,
    recorded_databases: dict[str, dict[str, TableFingerprint]],
    drill_record: ScenarioRecord,
    database: str,
) -> None:
    before = recorded_databases[database]
    after = table_fingerprints(restored.server.dsn(database))
    for table in sorted(set(before) | set(after)):
        drill_record.expect(f"{database}: {table}", str(before.get(table, "absent")),
                            str(after.get(table, "absent")))  # fmt: skip


@then(parsers.parse('table "{table}" of the database "{database}" is as recorded'))
def table_as_recorded(
    restored: RestoredServer,
    recorded_databases: dict[str, dict[str, TableFingerprint]],
    drill_record: ScenarioRecord,
    table: str,
    database: str,
) -> None:
    name = qualified(*parse_table_name(table))
    actual = table_fingerprint(restored.server.dsn(database), name)
    drill_record.expect(f"{database}: {name}", str(recorded_databases[database][name]), str(actual))


# --- damage to the server itself ------------------------------------------------------------


@when("the server is killed with SIGKILL")
def kill_server(source_server: PostgresServer) -> None:
    """As the OOM killer or a power cut does: no shutdown checkpoint, the data directory left."""
    pid = int((source_server.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    os.kill(pid, signal.SIGKILL)


@when(parsers.parse('a page of table "{table}" in the database "{database}" is corrupted on disk'))
def corrupt_page(source_server: PostgresServer, table: str, database: str) -> None:
    """Bytes in the middle of the table's first page are overwritten while the server is down,
    as a failing disk or controller does; the server is started again on them."""
    with connect(source_server.dsn(database)) as conn:
        row = conn.execute(
            "SELECT pg_relation_filepath(to_regclass(%s))", (qualified(*parse_table_name(table)),)
        ).fetchone()
        conn.execute("CHECKPOINT")
    assert row and row[0], f"no table {table} in {database}"
    source_server.stop()
    path = source_server.data_dir / str(row[0])
    with path.open("r+b") as fh:
        fh.seek(4096)
        fh.write(b"\xde\xad\xbe\xef" * 64)
    source_server.start()


@then(parsers.parse('reading table "{table}" of the database "{database}" fails with "{text}"'))
def reading_fails(
    source_server: PostgresServer,
    drill_record: ScenarioRecord,
    table: str,
    database: str,
    text: str,
) -> None:
    query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*parse_table_name(table)))
    warnings: list[str] = []  # "page verification failed, calculated checksum ..." comes first
    try:
        with connect(source_server.dsn(database)) as conn:
            conn.add_notice_handler(lambda notice: warnings.append(str(notice.message_primary)))
            conn.execute(query).fetchone()
        found = "read without an error"
    except psycopg.Error as exc:
        found = "; ".join([*warnings, str(exc).strip().splitlines()[0]])
    drill_record.expect(f"reading {table}", f"fails with {text!r}", found, text in found)


DISK_FILLER = "restore-drill-disk-filler"


@when("the disk of the data directory fills up")
def fill_disk(source_server: PostgresServer) -> None:
    """A file beside the cluster's own takes every free byte of its disk, as a runaway log or
    export does. Only on a server given a disk of its own: never fills a shared one."""
    disk = os.statvfs(source_server.data_dir)
    assert disk.f_blocks * disk.f_frsize <= 4 << 30, (
        "the data directory is not on a small disk of its own: start the server with "
        "'a running PostgreSQL server on a N MB disk archiving WAL to the repository'"
    )
    fd = os.open(source_server.data_dir / DISK_FILLER, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 4096, 1):  # then the last bytes
            with contextlib.suppress(OSError):  # ENOSPC is the point
                while os.write(fd, bytes(size)):
                    pass
    finally:
        os.close(fd)


@when("the disk of the data directory has room again")
def free_disk(source_server: PostgresServer) -> None:
    (source_server.data_dir / DISK_FILLER).unlink()
