"""Making recent WAL durable in the archive on demand, and timing how long it takes.

Used by drills before a simulated loss ("the WAL is archived") and by `check` as the live RPO
probe: switch to a new WAL segment and wait until the finished one appears in storage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from backup_engine.codecs import CODEC_NAMES, get_codec
from backup_engine.errors import BackupEngineError
from backup_engine.postgres.connection import connect
from backup_engine.postgres.lsn import parse_lsn, wal_file_name
from backup_engine.postgres.wal import wal_key
from backup_engine.storage.base import Storage


class ArchivingStalled(BackupEngineError):
    """A finished WAL segment did not reach the archive in time."""


@dataclass(frozen=True)
class ArchivedSegment:
    name: str
    seconds: float  # from the switch until it was visible in storage


def switch_and_wait_archived(dsn: str, storage: Storage, *, timeout: float = 60) -> ArchivedSegment:
    started = time.monotonic()
    with connect(dsn) as conn:
        row = conn.execute(
            "SELECT s::text, pg_current_wal_insert_lsn()::text, pg_walfile_name(s),"
            " (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size')"
            " FROM pg_switch_wal() AS s"
        ).fetchone()
    assert row is not None
    switched_at, inserting_at, name, size = parse_lsn(str(row[0])), parse_lsn(str(row[1])), \
        str(row[2]), int(str(row[3]))  # fmt: skip
    if switched_at // size == inserting_at // size:
        # Nothing but unimportant records (running xacts...) since the last switch: PostgreSQL
        # did not switch, and returned a position in the segment still being written. Every
        # commit before this call is in the previous segment, which is the one to wait for.
        timeline = int(name[:8], 16)
        name = wal_file_name(timeline, switched_at // size * size, size, previous=True)
    keys = [wal_key(name, get_codec(codec)) for codec in CODEC_NAMES]
    while time.monotonic() - started < timeout:
        if any(storage.exists(key) for key in keys):
            return ArchivedSegment(name, time.monotonic() - started)
        time.sleep(0.1)
    raise ArchivingStalled(
        f"WAL segment {name} did not reach {storage.url} within {timeout:.0f} s",
        hint="check archive_command and pg_stat_archiver (last_failed_wal) on the server",
    )
