"""Connecting to the server being backed up, with errors a person can act on."""

from __future__ import annotations

import os
from dataclasses import dataclass

import psycopg
from psycopg.abc import Buffer
from psycopg.adapt import Loader
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from backup_engine.errors import ConfigError, ServerUnreachable

CONNECT_TIMEOUT_S = 10


def describe(dsn: str) -> str:
    """host:port/dbname as libpq would resolve them, never the password."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"invalid PostgreSQL connection string: {exc}") from None
    host = params.get("host") or os.environ.get("PGHOST") or "localhost"
    port = params.get("port") or os.environ.get("PGPORT") or "5432"
    dbname = params.get("dbname") or os.environ.get("PGDATABASE") or ""
    return f"{host}:{port}" + (f"/{dbname}" if dbname else "")


class _LenientText(Loader):
    """Text from a SQL_ASCII database: bytes in no declared encoding. Read as UTF-8 where they
    are, kept (as surrogates) where they are not, instead of arriving as Python bytes."""

    def load(self, data: Buffer) -> str:
        return bytes(data).decode("utf-8", errors="surrogateescape")


def _speak_utf8(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Older clusters initialised with -E SQL_ASCII make psycopg return every text value as
    bytes (a backup once crashed on int("b'150018'")). Ask for UTF-8 (the server converts
    nothing for SQL_ASCII) and read leniently."""
    if conn.info.encoding == "ascii":
        conn.execute("SET client_encoding TO 'UTF8'")
        for name in ("text", "varchar", "bpchar", "name"):
            conn.adapters.register_loader(name, _LenientText)


def connect(
    dsn: str, *, autocommit: bool = True, replication: bool = False
) -> psycopg.Connection[tuple[object, ...]]:
    """A connection; `replication`: a physical replication one (BASE_BACKUP), which needs the
    REPLICATION attribute and a `replication` line in pg_hba.conf, as pg_basebackup does."""
    try:
        if replication:
            dsn = make_conninfo(dsn, replication="true")
        conn = psycopg.connect(dsn, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_S)
        if not replication:  # a replication connection takes replication commands only
            _speak_utf8(conn)
        if not autocommit:
            conn.commit()
        return conn
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "connection failed"
        hint = (
            "a base backup needs a role with the REPLICATION attribute and a `replication` "
            "line for this host in pg_hba.conf"
            if replication and ("replication" in reason or "walsender" in reason)
            else "check that the server runs and the connection settings "
            "([postgres] dsn, --dsn or PGHOST/PGPORT/PGUSER)"
        )
        raise ServerUnreachable(
            f"cannot connect to PostgreSQL at {describe(dsn)}: {reason}", hint=hint
        ) from None
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"invalid PostgreSQL connection string: {exc}") from None


@dataclass(frozen=True)
class ServerFacts:
    version: str
    version_num: int
    wal_segment_size: int
    database_bytes: int | None  # an estimate for progress bars; None when not readable
    standby: bool = False  # a hot standby (a backup taken there loads the primary with nothing)

    @property
    def major(self) -> int:
        return self.version_num // 10000


def next_xid(dsn: str) -> int | None:
    """The next transaction id to be assigned (64-bit, epoch included), or None if unreadable."""
    try:
        with connect(dsn) as conn:
            row = conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text").fetchone()
    except psycopg.Error:
        return None
    return int(str(row[0])) if row else None


def server_facts(dsn: str) -> ServerFacts:
    """What a backup needs to know before it starts; readable by a non-superuser backup role."""
    with connect(dsn) as conn:
        row = conn.execute(
            "SELECT current_setting('server_version'),"
            " current_setting('server_version_num'),"
            " (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'),"
            " pg_is_in_recovery()::text"
        ).fetchone()
        assert row is not None
        size: int | None
        try:
            total = conn.execute("SELECT sum(pg_database_size(oid)) FROM pg_database").fetchone()
            size = int(str(total[0])) if total and total[0] is not None else None
        except psycopg.Error:
            size = None  # no CONNECT on some database: the progress bar just has no total
    version, num, segsize, recovering = (str(v) for v in row)
    return ServerFacts(
        version=version.split()[0],
        version_num=int(num),
        wal_segment_size=int(segsize),
        database_bytes=size,
        standby=recovering == "true",
    )


def setting(dsn: str, name: str) -> str | None:
    """A server setting's current value (None when the server has no such setting)."""
    with connect(dsn) as conn:
        row = conn.execute("SELECT current_setting(%s, true)", (name,)).fetchone()
    return None if row is None or row[0] is None else str(row[0])


def system_identifier(dsn: str) -> str | None:
    """The server's system identifier, or None where the role may not read it (pg_control_*
    functions are for superusers unless granted)."""
    try:
        with connect(dsn) as conn:
            row = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
    except psycopg.Error:
        return None
    return str(row[0]) if row else None


def tablespace_names(dsn: str) -> dict[int, str]:
    """oid -> name of every tablespace (pg_tablespace is readable by any role)."""
    with connect(dsn) as conn:
        rows = conn.execute("SELECT oid::bigint, spcname::text FROM pg_tablespace").fetchall()
    return {int(str(oid)): str(name) for oid, name in rows}
