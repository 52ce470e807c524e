"""Markers: a committed row plus everything a recovery target can name about that moment.

Following pgBackRest's integration tests: before each recovery target, write a marker row and
note its commit's time, LSN and transaction id, and create a restore point; after a recovery
to that target, the marker must be there and whatever came later must not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from backup_engine.postgres.connection import connect
from backup_engine.postgres.lsn import parse_lsn
from backup_engine.postgres.restore_points import create_restore_point
from backup_engine.postgres.targets import RecoveryTarget
from backup_engine.storage.base import Storage

MARKER_TABLE = """
CREATE TABLE IF NOT EXISTS drill_markers (
    name        text PRIMARY KEY,
    written_at  timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""

# How far apart the marker's commit, the recorded target time and the next change are, so that
# "just before the bad change" is unambiguous at PostgreSQL's microsecond timestamps.
SEPARATION_S = 0.05


@dataclass(frozen=True)
class Marker:
    name: str
    committed_at: datetime  # server clock, just after the commit
    lsn: int  # WAL insert position just after the commit
    xid: int  # the marker transaction's id
    restore_point: str

    def target(self, kind: str) -> RecoveryTarget:
        if kind == "time":
            return RecoveryTarget("time", time=self.committed_at)
        if kind == "lsn":
            return RecoveryTarget("lsn", lsn=self.lsn)
        if kind == "transaction id":
            return RecoveryTarget("xid", xid=self.xid)
        if kind == "restore point":
            return RecoveryTarget("name", name=self.restore_point)
        raise ValueError(f"unknown target kind {kind!r}")


def write_marker(dsn: str, storage: Storage, name: str, *, restore_point: bool = True) -> Marker:
    with connect(dsn, autocommit=False) as conn:
        conn.execute(MARKER_TABLE)
        row = conn.execute(
            "INSERT INTO drill_markers (name) VALUES (%s) RETURNING pg_current_xact_id()::text",
            (name,),
        ).fetchone()
        conn.commit()
        assert row is not None
        xid = int(str(row[0]))
        time.sleep(SEPARATION_S)
        after = conn.execute(
            "SELECT clock_timestamp(), pg_current_wal_insert_lsn()::text"
        ).fetchone()
        conn.commit()
    assert after is not None
    point_name = f"drill-{name}"
    if restore_point:  # (also switches WAL, as pgBackRest's tests do before each target)
        create_restore_point(storage, dsn, point_name)
    time.sleep(SEPARATION_S)
    committed_at, lsn = after
    assert isinstance(committed_at, datetime)
    return Marker(name, committed_at, parse_lsn(str(lsn)), xid, point_name)


def marker_exists(dsn: str, name: str) -> bool:
    with connect(dsn) as conn:
        table = conn.execute("SELECT to_regclass('drill_markers')").fetchone()
        if table is None or table[0] is None:
            return False
        row = conn.execute("SELECT count(*) FROM drill_markers WHERE name = %s", (name,)).fetchone()
    return bool(row and row[0])
