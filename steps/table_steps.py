"""Steps for single-table recovery into the live server."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql
from pytest_bdd import given, parsers, then, when

from backup_engine.drill.evidence import ScenarioRecord
from backup_engine.drill.markers import Marker
from backup_engine.postgres.connection import connect
from backup_engine.postgres.identifiers import parse_table_name, qualified
from backup_engine.postgres.inspect import TableFingerprint, table_fingerprint
from backup_engine.servers import PostgresBackend, PostgresServer
from backup_engine.storage import Storage
from backup_engine.table_restore import TableRestoreResult, restore_table


@dataclass(frozen=True)
class RestoredTable:
    result: TableRestoreResult

    @property
    def rto_seconds(self) -> float:
        return self.result.seconds


def _name(table: str) -> str:
    """A table as the scenario writes it (`orders`, `public."Order Items.v2"`), fully
    qualified and quoted where needed: the key of recorded fingerprints."""
    return qualified(*parse_table_name(table))


@given(parsers.parse("a table {table} with {rows:d} rows"))
def odd_table(source_server: PostgresServer, table: str, rows: int) -> None:
    with connect(source_server.dsn()) as conn:
        name = sql.Identifier(*parse_table_name(table))
        conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, note text)").format(name))
        conn.execute(
            sql.SQL("INSERT INTO {} SELECT g, md5(g::text) FROM generate_series(1, %s) g").format(
                name
            ),
            (rows,),
        )


@when(parsers.parse("the {table} table is dropped"))
def drop_table(source_server: PostgresServer, table: str) -> None:
    with connect(source_server.dsn()) as conn:
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(*parse_table_name(table))))


def _restore(
    repository: Storage,
    pg_backend: PostgresBackend,
    source_server: PostgresServer,
    marker: Marker,
    kind: str,
    table: str,
    drill_record: ScenarioRecord,
    *,
    as_name: str | None = None,
    replace_rows: bool = False,
) -> RestoredTable:
    result = restore_table(
        repository,
        pg_backend,
        table=table,
        target=marker.target(kind),
        into_dsn=source_server.dsn(),
        as_name=as_name,
        replace_rows=replace_rows,
    )
    drill_record.used_backup(result.backup_id, {})
    for phase, seconds in result.phases:
        drill_record.phase(phase, seconds)
    return RestoredTable(result)


@when(
    parsers.parse('the {table} table is restored from the {kind} of marker "{name}" as "{new}"'),
    target_fixture="restored",
)
def restore_table_as(
    repository: Storage,
    pg_backend: PostgresBackend,
    source_server: PostgresServer,
    markers: dict[str, Marker],
    drill_record: ScenarioRecord,
    table: str,
    kind: str,
    name: str,
    new: str,
) -> RestoredTable:
    return _restore(
        repository, pg_backend, source_server, markers[name], kind, table, drill_record, as_name=new
    )


@when(
    parsers.parse('the {table} table is restored from the {kind} of marker "{name}" replacing it'),
    target_fixture="restored",
)
def restore_table_replacing(
    repository: Storage,
    pg_backend: PostgresBackend,
    source_server: PostgresServer,
    markers: dict[str, Marker],
    drill_record: ScenarioRecord,
    table: str,
    kind: str,
    name: str,
) -> RestoredTable:
    return _restore(
        repository, pg_backend, source_server, markers[name], kind, table, drill_record,
        replace_rows=True,
    )  # fmt: skip


@then(parsers.parse('table "{table}" holds the recorded content of "{original}"'))
def table_has_recorded_content(
    source_server: PostgresServer,
    recorded_tables: dict[str, TableFingerprint],
    drill_record: ScenarioRecord,
    table: str,
    original: str,
) -> None:
    actual = table_fingerprint(source_server.dsn(), _name(table))
    expected = recorded_tables[_name(original)]
    drill_record.expect(f"{_name(table)} holds what {_name(original)} held", str(expected),
                        str(actual))  # fmt: skip


@then(parsers.parse('the tables "{names}" are as recorded'))
def tables_as_recorded(
    source_server: PostgresServer,
    recorded_tables: dict[str, TableFingerprint],
    drill_record: ScenarioRecord,
    names: str,
) -> None:
    for name in (_name(n.strip()) for n in names.split(",")):
        actual = table_fingerprint(source_server.dsn(), name)
        drill_record.expect(f"{name} untouched", str(recorded_tables[name]), str(actual))


@then(parsers.parse('table "{table}" still has {rows:d} rows'))
def table_row_count(
    source_server: PostgresServer, drill_record: ScenarioRecord, table: str, rows: int
) -> None:
    found = table_fingerprint(source_server.dsn(), _name(table)).rows
    drill_record.expect(f"rows in {_name(table)}", rows, found)
