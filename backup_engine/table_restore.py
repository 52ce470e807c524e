"""Single-table restore: bring one table back from a point in time, next to the live data.

The seed plan's table-level procedure, made safe and done in one command:
1. restore the backup into a temporary side cluster and recover it to the target (it never
   archives, and is deleted afterwards, whatever happens);
2. in the side cluster, rename the table (and the indexes, constraints and sequences that
   would collide with live names) to the new name, and drop its foreign keys: the copy is
   for inspection and repair, and must not tie itself to live rows;
3. pg_dump that one table | pg_restore it into the live database, in one transaction.
The damaged table is never touched, unless `replace` is asked for: then its rows are replaced
by the restored rows in one transaction, with foreign-key actions suspended so that rows in
other tables referencing it are left alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from psycopg import sql

from backup_engine.errors import BackupEngineError
from backup_engine.postgres.binaries import find_pg_binaries
from backup_engine.postgres.connection import connect
from backup_engine.postgres.identifiers import (
    dump_pattern,
    parse_identifier,
    parse_table_name,
    qualified,
    truncate_identifier,
)
from backup_engine.postgres.recovery import RecoveryOutcome
from backup_engine.postgres.recovery_config import fetch_command
from backup_engine.postgres.restore import Recovery
from backup_engine.postgres.targets import RecoveryTarget
from backup_engine.process import pipe
from backup_engine.servers.base import PostgresBackend
from backup_engine.side_cluster import recover_into_new_server
from backup_engine.storage.base import Storage

MAX_IDENTIFIER = 63


class TableRestoreError(BackupEngineError):
    """The table cannot be restored as asked (it did not exist then, the name is taken...)."""


@dataclass(frozen=True)
class TableRestoreResult:
    table: str
    restored_as: str
    rows: int
    backup_id: str
    replaced: bool
    recovery: RecoveryOutcome
    seconds: float
    phases: tuple[tuple[str, float], ...] = ()  # the side cluster's, then the copy


def default_copy_name(name: str, now: datetime) -> str:
    suffix = f"_restored_{now.astimezone(UTC).strftime('%Y%m%d%H%M%S')}"
    return truncate_identifier(name)[: MAX_IDENTIFIER - len(suffix)].rstrip() + suffix


def _table_oid(conn: object, schema: str, name: str) -> int | None:
    row = conn.execute(  # type: ignore[attr-defined]
        "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))::oid", (schema, name)
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def _table_exists(conn: object, schema: str, name: str) -> bool:
    return _table_oid(conn, schema, name) is not None


def _spelled_otherwise(conn: object, schema: str, name: str) -> str | None:
    """A table whose name differs only in case: what the operator probably meant."""
    row = conn.execute(  # type: ignore[attr-defined]
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE lower(n.nspname) = lower(%s) AND lower(c.relname) = lower(%s)"
        " AND c.relkind IN ('r', 'p') LIMIT 1",
        (schema, name),
    ).fetchone()
    return qualified(str(row[0]), str(row[1])) if row else None


def _check_live(into_dsn: str, schema: str, name: str, new_name: str, replace_rows: bool) -> bool:
    """Validate against the live database before any work; return whether the table exists."""
    with connect(into_dsn) as conn:
        exists = _table_exists(conn, schema, name)
        if not exists and (other := _spelled_otherwise(conn, schema, name)) is not None:
            raise TableRestoreError(
                f"there is no table {qualified(schema, name)} in the live database, but there "
                f"is {other}",
                hint=f"names with capitals must be quoted: --table '{other}'",
            )
        if new_name != name and _table_exists(conn, schema, new_name):
            raise TableRestoreError(
                f"{qualified(schema, new_name)} already exists in the live database",
                hint="choose another name with --as",
            )
        if replace_rows and exists:
            row = conn.execute(
                "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
            if not (row and row[0]):
                raise TableRestoreError(
                    "--replace needs a superuser connection (foreign-key actions are suspended "
                    "while the rows are swapped)",
                    hint="connect as a superuser, or restore next to the table and copy yourself",
                )
    return exists


def _prepare_copy(
    side_dsn: str, schema: str, name: str, new_name: str, keep_foreign_keys: bool
) -> int:
    """In the side cluster: rename the table and what would collide; return its row count."""
    with connect(side_dsn) as conn:
        oid = _table_oid(conn, schema, name)
        if oid is None:
            raise TableRestoreError(
                f"table {qualified(schema, name)} did not exist at the recovery target"
            )
        table = sql.Identifier(schema, name)
        if not keep_foreign_keys:
            for (constraint,) in conn.execute(
                "SELECT conname FROM pg_constraint WHERE conrelid = %s AND contype = 'f'", (oid,)
            ).fetchall():
                conn.execute(
                    sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                        table, sql.Identifier(str(constraint))
                    )
                )
        if new_name != name:
            _rename_dependents(conn, schema, oid, name, new_name)
            conn.execute(
                sql.SQL("ALTER TABLE {} RENAME TO {}").format(table, sql.Identifier(new_name))
            )
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, new_name))
        ).fetchone()
    assert row is not None
    return int(str(row[0]))


def _rename_dependents(conn: object, schema: str, oid: int, name: str, new_name: str) -> None:
    """Indexes (and so PK/unique constraints) and owned sequences have schema-wide names."""
    relations = conn.execute(  # type: ignore[attr-defined]
        """
        SELECT c.relname, c.relkind FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = %(t)s
        UNION ALL
        SELECT s.relname, s.relkind FROM pg_depend d JOIN pg_class s ON s.oid = d.objid
        WHERE d.refobjid = %(t)s AND s.relkind = 'S' AND d.deptype IN ('a', 'i')
        """,
        {"t": oid},
    ).fetchall()
    for relname, relkind in relations:
        renamed = (
            str(relname).replace(name, new_name, 1)
            if str(relname).startswith(name)
            else f"{new_name}_{relname}"
        )
        kind = sql.SQL("INDEX") if relkind == "i" else sql.SQL("SEQUENCE")
        conn.execute(  # type: ignore[attr-defined]
            sql.SQL("ALTER {} {} RENAME TO {}").format(
                kind,
                sql.Identifier(schema, str(relname)),
                sql.Identifier(truncate_identifier(renamed)),
            )
        )


def _swap_rows(into_dsn: str, schema: str, name: str, copy: str) -> None:
    with connect(into_dsn, autocommit=False) as conn:
        conn.execute("SET LOCAL session_replication_role = replica")  # no FK cascades
        live, restored = sql.Identifier(schema, name), sql.Identifier(schema, copy)
        conn.execute(sql.SQL("DELETE FROM {}").format(live))
        conn.execute(
            sql.SQL("INSERT INTO {} OVERRIDING SYSTEM VALUE SELECT * FROM {}").format(
                live, restored
            )
        )
        conn.execute(sql.SQL("DROP TABLE {}").format(restored))
        conn.commit()


def restore_table(
    storage: Storage,
    backend: PostgresBackend,
    *,
    table: str,
    target: RecoveryTarget,
    into_dsn: str,
    as_name: str | None = None,
    replace_rows: bool = False,
    ref: str = "auto",
    bindir: str | None = None,
    config_file: Path | None = None,
) -> TableRestoreResult:
    started = time.monotonic()
    schema, name = parse_table_name(table)
    copy_name = parse_identifier(as_name) if as_name else default_copy_name(name, datetime.now(UTC))
    live_exists = _check_live(into_dsn, schema, name, copy_name, replace_rows)
    # A dropped table comes back under its own name when --replace is given.
    restored_name = name if replace_rows and not live_exists else copy_name
    side_target = replace(target, action="promote")  # the side cluster must become writable
    recovered = recover_into_new_server(
        storage, ref, backend, Recovery(fetch_command(storage.url, config_file), side_target),
        settings={"archive_mode": "off"}, bindir=bindir,
    )  # fmt: skip
    side, restored = recovered.server, recovered.restore
    copying = time.monotonic()
    try:
        rows = _prepare_copy(
            side.dsn(), schema, name, restored_name, keep_foreign_keys=restored_name == name
        )
        binaries = find_pg_binaries(
            bindir, major=restored.plan.backup.pg_major if restored.plan else None
        )
        pipe(
            [binaries.path("pg_dump"), "--format=custom",
             f"--table={dump_pattern(schema, restored_name)}",
             f"--dbname={side.dsn()}"],
            [binaries.path("pg_restore"), "--no-owner", "--no-privileges", "--single-transaction",
             "--exit-on-error", f"--dbname={into_dsn}"],
        )  # fmt: skip
    finally:
        side.destroy()
    if replace_rows and live_exists:
        _swap_rows(into_dsn, schema, name, restored_name)
        restored_name = name
    return TableRestoreResult(
        table=qualified(schema, name),
        restored_as=qualified(schema, restored_name),
        rows=rows,
        backup_id=restored.backup_id,
        replaced=replace_rows,
        recovery=recovered.recovery,
        seconds=time.monotonic() - started,
        phases=(*recovered.phases,
                ("copy the table into the live database", time.monotonic() - copying)),
    )  # fmt: skip
