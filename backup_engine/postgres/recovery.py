"""Watching a restored server recover: until it promotes, pauses at the target, or stops."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime

import psycopg

from backup_engine.errors import BackupEngineError, ServerUnreachable
from backup_engine.postgres.connection import connect
from backup_engine.servers.base import PostgresServer

POLL_S = 0.2


class RecoveryFailed(BackupEngineError):
    """PostgreSQL stopped recovery with an error (its log line is in the message)."""


@dataclass(frozen=True)
class RecoveryOutcome:
    state: str  # "promoted", "paused" or "shut down"
    reached_lsn: str | None  # last WAL record replayed
    last_transaction_time: datetime | None  # commit time of the last transaction replayed
    timeline: int | None
    seconds: float


_STATUS = """
SELECT pg_is_in_recovery(),
       CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() END,
       pg_last_wal_replay_lsn()::text,
       pg_last_xact_replay_timestamp(),
       (SELECT timeline_id FROM pg_control_checkpoint())
"""


def _from_log(server: PostgresServer, started: float) -> RecoveryOutcome:
    log = server.log_tail(40)
    if "shutdown at recovery target" in log:
        match = re.search(r"recovery stopping (?:before|after) .*?, time (\S+ \S+)", log)
        moment = datetime.fromisoformat(match.group(1)) if match else None
        return RecoveryOutcome("shut down", None, moment, None, time.monotonic() - started)
    fatal = [line for line in log.splitlines() if "FATAL" in line or "PANIC" in line]
    reason = fatal[-1].split("FATAL:", 1)[-1].strip() if fatal else "the server exited"
    hint = "see the server log for the full story"
    if "before configured recovery target was reached" in reason:
        hint = (
            "the archived WAL ends before the target: nothing was committed after it yet. "
            "Restore again with an earlier target or --target latest"
        )
    raise RecoveryFailed(f"recovery failed: {reason}", hint=hint)


def wait_for_recovery(server: PostgresServer, *, timeout: float = 24 * 3600) -> RecoveryOutcome:
    """Poll a server we started until recovery ends (promote), pauses at the target, or the
    server stops (at the target with action shutdown, or with an error)."""
    return _wait(server.dsn(), timeout, server=server)


def wait_for_connected_recovery(
    dsn: str, *, timeout: float = 24 * 3600, unreachable_for: float = 120
) -> RecoveryOutcome:
    """The same for a server started by someone else: we only have its address."""
    return _wait(dsn, timeout, unreachable_for=unreachable_for)


def _wait(
    dsn: str,
    timeout: float,
    *,
    server: PostgresServer | None = None,
    unreachable_for: float | None = None,
) -> RecoveryOutcome:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if server is not None and not server.is_running():
            return _from_log(server, started)
        try:
            with connect(dsn) as conn:
                row = conn.execute(_STATUS).fetchone()
        except (ServerUnreachable, psycopg.Error):
            # Still starting, or not yet consistent: keep waiting, within reason.
            if unreachable_for is not None and time.monotonic() - started > unreachable_for:
                raise
            time.sleep(POLL_S)
            continue
        unreachable_for = None  # it answered once: from now on it is recovering, not absent
        assert row is not None
        in_recovery, pause_state, lsn, last_commit, timeline = row
        if not in_recovery or pause_state == "paused":
            return RecoveryOutcome(
                state="paused" if in_recovery else "promoted",
                reached_lsn=str(lsn) if lsn else None,
                last_transaction_time=last_commit if isinstance(last_commit, datetime) else None,
                timeline=int(str(timeline)) if timeline is not None else None,
                seconds=time.monotonic() - started,
            )
        time.sleep(POLL_S)
    raise RecoveryFailed(f"recovery did not finish within {timeout:.0f} s")
