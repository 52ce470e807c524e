"""Fingerprints of table contents, to prove a restore brought back exactly what was lost, and
where a server keeps its tablespaces."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from backup_engine.postgres.connection import connect
from backup_engine.postgres.identifiers import parse_table_name, qualified

_USER_TABLES = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%'
ORDER BY 1, 2
"""


@dataclass(frozen=True)
class TableFingerprint:
    rows: int
    checksum: str  # md5 over the sorted md5 of every row's text form: independent of row order

    def __str__(self) -> str:
        return f"{self.rows} rows, md5 {self.checksum}"


def table_fingerprint(dsn: str, table: str) -> TableFingerprint:
    """`table` as an operator writes it: orders, public.orders, public."Order Items"."""
    schema, name = parse_table_name(table)
    with connect(dsn) as conn:
        return _fingerprint(conn, schema, name)


def table_fingerprints(dsn: str) -> dict[str, TableFingerprint]:
    """Every user table, as "schema.table" (quoted where SQL needs it) -> fingerprint."""
    with connect(dsn) as conn:
        tables = [(str(s), str(t)) for s, t in conn.execute(_USER_TABLES).fetchall()]
        return {qualified(s, t): _fingerprint(conn, s, t) for s, t in tables}


def _fingerprint(conn: object, schema: str, table: str) -> TableFingerprint:
    query = sql.SQL(
        "SELECT count(*), md5(coalesce(string_agg(h, '' ORDER BY h), ''))"
        " FROM (SELECT md5(t::text) AS h FROM {} AS t) AS rows"
    ).format(sql.Identifier(schema, table))
    row = conn.execute(query).fetchone()  # type: ignore[attr-defined]
    return TableFingerprint(rows=int(row[0]), checksum=str(row[1]))


def tablespace_locations(dsn: str) -> dict[str, str]:
    """Every tablespace but the two built in: name -> its directory on the server."""
    with connect(dsn) as conn:
        rows = conn.execute(
            "SELECT spcname::text, pg_tablespace_location(oid) FROM pg_tablespace"
            " WHERE spcname NOT IN ('pg_default', 'pg_global')"
        ).fetchall()
    return {str(name): str(where) for name, where in rows}
