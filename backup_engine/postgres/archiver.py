"""What PostgreSQL's own archiver says: archive_mode and archive_command, pg_stat_archiver's
last success and failure, and the WAL waiting in pg_wal/archive_status. One query, no access
to the repository: cheap enough for a metrics timer every minute, and what `check` reads
first so a server that archives nothing is named at once instead of after a probe's timeout.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import psycopg

from backup_engine.postgres.connection import connect

_STATE = """
SELECT current_setting('archive_mode'), current_setting('archive_command'),
       coalesce(current_setting('archive_library', true), ''), pg_is_in_recovery(),
       a.archived_count, a.last_archived_wal, a.last_archived_time,
       a.failed_count, a.last_failed_wal, a.last_failed_time,
       current_setting('wal_segment_size')
FROM pg_stat_archiver a
"""
# pg_ls_archive_statusdir() needs pg_monitor: asked apart, so its refusal costs only this part.
_READY = """
SELECT count(*), min(modification) FROM pg_ls_archive_statusdir()
WHERE name LIKE '%.ready' AND length(name) = 30
"""


@dataclass(frozen=True)
class ArchiverState:
    archive_mode: str  # off | on | always
    archive_command: str
    archive_library: str
    in_recovery: bool
    archived_count: int
    last_archived_wal: str | None
    last_archived_at: datetime | None
    failed_count: int
    last_failed_wal: str | None
    last_failed_at: datetime | None
    segment_bytes: int
    ready_segments: int | None = None  # None: the role may not read archive_status
    oldest_ready_at: datetime | None = None

    @property
    def configured(self) -> bool:
        """archive_mode on (or always) with a command or library to archive through."""
        has_command = bool(self.archive_command.strip() or self.archive_library)
        return self.archive_mode != "off" and has_command

    @property
    def failing(self) -> bool:
        """The newest attempt failed and nothing was archived after it."""
        if self.last_failed_at is None:
            return False
        return self.last_archived_at is None or self.last_failed_at > self.last_archived_at

    def problem(self) -> str | None:
        """Why WAL is not reaching the archive, in one line naming the setting, or None."""
        if self.archive_mode == "off":
            return (
                "archive_mode is off: PostgreSQL archives no WAL (set archive_mode = on and "
                "archive_command, then restart the server)"
            )
        if self.in_recovery and self.archive_mode != "always":
            return None  # a standby: its primary archives
        if not self.archive_command.strip() and not self.archive_library:
            return (
                "archive_command is empty: WAL is kept in pg_wal and never archived (set it to "
                "'backup-engine pg wal-push %p', then reload)"
            )
        if self.failing:
            return (
                f"archive_command failed for {self.last_failed_wal} at "
                f"{self.last_failed_at:%Y-%m-%d %H:%M:%S %Z} and nothing was archived since "
                f"({self.failed_count} failures in all): see the server log for its error"
            )
        return None


def archiver_state(dsn: str) -> ArchiverState:
    """The archiver's state; psycopg.Error / ServerUnreachable when the server cannot say."""
    with connect(dsn) as conn:
        row = conn.execute(_STATE).fetchone()
        assert row is not None  # pg_stat_archiver always has its one row
        ready: tuple[object, ...] | None
        try:
            with conn.transaction():
                ready = conn.execute(_READY).fetchone()
        except psycopg.errors.InsufficientPrivilege:
            ready = None
    state = ArchiverState(
        archive_mode=str(row[0]),
        archive_command=str(row[1]),
        archive_library=str(row[2]),
        in_recovery=bool(row[3]),
        archived_count=int(str(row[4])),
        last_archived_wal=_text(row[5]),
        last_archived_at=_time(row[6]),
        failed_count=int(str(row[7])),
        last_failed_wal=_text(row[8]),
        last_failed_at=_time(row[9]),
        segment_bytes=segment_bytes(str(row[10])),
    )
    if ready is None:
        return state
    return replace(state, ready_segments=int(str(ready[0])), oldest_ready_at=_time(ready[1]))


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _time(value: object) -> datetime | None:
    return value if isinstance(value, datetime) else None


def segment_bytes(setting: str) -> int:
    """wal_segment_size as PostgreSQL shows it ('16MB', '1GB') in bytes."""
    number = int("".join(c for c in setting if c.isdigit()) or 16)
    return number << (30 if setting.upper().endswith("GB") else 20)
