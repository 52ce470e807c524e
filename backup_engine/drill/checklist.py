"""The restore checklist of the recovery plan, as queries against a restored server.

Each function returns plain data (what was found); the Then-steps compare it with what the
scenario expects and record both in the evidence.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import Connection, sql

from backup_engine.postgres.connection import connect

_FOREIGN_KEYS = """
SELECT c.conname, c.conrelid::regclass::text, c.confrelid::regclass::text,
       c.conrelid, c.confrelid, c.conkey, c.confkey
FROM pg_constraint c
JOIN pg_namespace n ON n.oid = c.connamespace
WHERE c.contype = 'f' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY 1
"""

_COLUMN = "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum = %s"


@dataclass(frozen=True)
class ForeignKeyCheck:
    constraint: str
    table: str
    references: str
    orphans: int


def row_count(dsn: str, table: str) -> int:
    schema, _, name = table.rpartition(".")
    with connect(dsn) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema or "public", name))
        ).fetchone()
    return int(str(row[0])) if row else 0


def query_value(dsn: str, query: str) -> str | None:
    """The first column of the first row, as text (None for no row or NULL)."""
    with connect(dsn) as conn:
        row = conn.execute(query).fetchone()
    return None if row is None or row[0] is None else str(row[0])


def _column(conn: Connection[tuple[object, ...]], relation: object, number: object) -> str:
    row = conn.execute(_COLUMN, (relation, number)).fetchone()
    assert row is not None
    return str(row[0])


def foreign_key_orphans(dsn: str) -> list[ForeignKeyCheck]:
    """Every foreign key in the catalog, with the number of rows pointing at nothing.

    MATCH SIMPLE semantics, as PostgreSQL enforces them: a row with any NULL key column is not
    checked.
    """
    results = []
    with connect(dsn) as conn:
        for name, table, parent, rel, prel, keys, pkeys in conn.execute(_FOREIGN_KEYS).fetchall():
            child_cols = [_column(conn, rel, k) for k in keys]  # type: ignore[attr-defined]
            parent_cols = [_column(conn, prel, k) for k in pkeys]  # type: ignore[attr-defined]
            not_null = sql.SQL(" AND ").join(
                sql.SQL("c.{} IS NOT NULL").format(sql.Identifier(col)) for col in child_cols
            )
            matches = sql.SQL(" AND ").join(
                sql.SQL("p.{} = c.{}").format(sql.Identifier(p), sql.Identifier(c))
                for p, c in zip(parent_cols, child_cols, strict=True)
            )
            query = sql.SQL(
                "SELECT count(*) FROM {} AS c WHERE {} AND NOT EXISTS "
                "(SELECT 1 FROM {} AS p WHERE {})"
            ).format(sql.SQL(str(table)), not_null, sql.SQL(str(parent)), matches)
            row = conn.execute(query).fetchone()
            orphans = int(str(row[0])) if row else 0
            results.append(ForeignKeyCheck(str(name), str(table), str(parent), orphans))
    return results


@dataclass(frozen=True)
class IndexCheck:
    index: str
    valid: bool
    amcheck: str  # "ok", "not btree", "unavailable", or the error


def index_health(dsn: str, *, use_amcheck: bool = True) -> list[IndexCheck]:
    """Every user index: valid and ready, and (btree) checked by amcheck's bt_index_check."""
    results = []
    with connect(dsn) as conn:
        rows = conn.execute(
            """
            SELECT i.indexrelid::regclass::text, i.indisvalid AND i.indisready, am.amname
            FROM pg_index i
            JOIN pg_class c ON c.oid = i.indexrelid
            JOIN pg_am am ON am.oid = c.relam
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
            ORDER BY 1
            """
        ).fetchall()
        available = use_amcheck
        if available:
            try:
                conn.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
            except Exception:  # noqa: BLE001 - no contrib, or read-only: report, don't fail
                available = False
        for index, valid, method in rows:
            verdict = "unavailable" if not available else "not btree"
            if available and method == "btree":
                try:
                    conn.execute("SELECT bt_index_check(%s::regclass)", (index,))
                    verdict = "ok"
                except Exception as exc:  # noqa: BLE001 - the finding is the point
                    verdict = str(exc).splitlines()[0]
            results.append(IndexCheck(str(index), bool(valid), verdict))
    return results


def index_names(dsn: str) -> set[str]:
    return {check.index for check in index_health(dsn, use_amcheck=False)}
