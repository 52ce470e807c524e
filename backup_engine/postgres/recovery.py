"""Watching a restored server recover: until it promotes, pauses at the target, or stops.

A server that stops during recovery (PostgreSQL ends with FATAL "recovery ended before
configured recovery target was reached" when the target lies past the last commit) must be
noticed in seconds, with PostgreSQL's own reason, never waited on until a day-long timeout.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

import psycopg

from backup_engine.errors import BackupEngineError, ServerUnreachable
from backup_engine.postgres.connection import connect
from backup_engine.postgres.live import running_postmaster

POLL_S = 0.2
GONE_AFTER_S = 10.0  # a server that answered once and then stops answering this long is gone


class RecoveringServer(Protocol):
    """A server this process started (any backend): its address, liveness and log."""

    def dsn(self, dbname: str = "postgres") -> str: ...

    def is_running(self) -> bool: ...

    def log_tail(self, lines: int = 3) -> str: ...


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

# FATAL lines of clients refused while the server starts or stops: not why recovery ended.
_CLIENT_NOISE = (
    "the database system is starting up",
    "the database system is in recovery mode",
    "the database system is shutting down",
    "the database system is not yet accepting connections",
    "the database system is not accepting connections",
)

_REMEDIES = {
    "before configured recovery target was reached": (
        "the archived WAL ends before the target: nothing was committed after it (or the "
        "transaction never committed). Restore again with an earlier target or --target latest"
    ),
    "multiple recovery targets": "restore again: the restore writes exactly one target",
    "does not exist": "the timeline or WAL it needs is not in the archive; check pg list",
    "is not a child of this server's history": (
        "that timeline branched off before the backup ended; pick another --target-timeline"
    ),
}


def outcome_from_log(log: str, started: float) -> RecoveryOutcome:
    """What a stopped server's log says: shut down at its target, or the error that ended it."""
    if "shutdown at recovery target" in log:
        match = re.search(r"recovery stopping (?:before|after) .*?, time (\S+ \S+)", log)
        moment = datetime.fromisoformat(match.group(1)) if match else None
        return RecoveryOutcome("shut down", None, moment, None, time.monotonic() - started)
    fatal = [
        re.split(r"(?:FATAL|PANIC):\s*", line, maxsplit=1)[-1].strip()
        for line in log.splitlines()
        if ("FATAL" in line or "PANIC" in line) and not any(n in line for n in _CLIENT_NOISE)
    ]
    known = [line for line in fatal if any(key in line for key in _REMEDIES)]
    reason = (known or fatal or [""])[-1]
    hint = next((r for key, r in _REMEDIES.items() if key in reason), "see the server log")
    raise RecoveryFailed(
        f"recovery failed, the server stopped: {reason or 'no FATAL line in its log'}", hint=hint
    )


def wait_for_recovery(server: RecoveringServer, *, timeout: float = 24 * 3600) -> RecoveryOutcome:
    """Poll a server we started until recovery ends (promote), pauses at the target, or the
    server stops (at the target with action shutdown, or with an error)."""
    started = time.monotonic()

    def stopped() -> RecoveryOutcome | None:
        return None if server.is_running() else outcome_from_log(server.log_tail(40), started)

    return _wait(server.dsn(), timeout, stopped, started=started, unreachable_for=None)


def _log_of(pgdata: Path, log_file: Path | None) -> str:
    """The tail of the server's log: the given file, or what current_logfiles names."""
    candidates = [log_file] if log_file else []
    try:
        for line in (pgdata / "current_logfiles").read_text().splitlines():
            name = line.split(" ", 1)[-1].strip()
            candidates.append(Path(name) if Path(name).is_absolute() else pgdata / name)
    except OSError:
        pass
    for candidate in candidates:
        try:
            return "\n".join(candidate.read_text(errors="replace").splitlines()[-60:])
        except OSError:
            continue
    return ""


def wait_for_connected_recovery(
    dsn: str,
    *,
    timeout: float = 24 * 3600,
    unreachable_for: float = 120,
    pgdata: Path | None = None,
    log_file: Path | None = None,
) -> RecoveryOutcome:
    """The same for a server started by someone else. With its data directory, a server that
    stops is noticed from its postmaster.pid and its log read for the reason; without, a
    server that answered and then stops answering for GONE_AFTER_S is reported gone."""
    started = time.monotonic()
    seen: list[bool] = []

    def stopped() -> RecoveryOutcome | None:
        if pgdata is None:
            return None
        if running_postmaster(pgdata) is not None:
            seen.append(True)
            return None
        if not seen and time.monotonic() - started < unreachable_for:
            return None  # not started yet
        return outcome_from_log(_log_of(pgdata, log_file), started)

    # With the data directory, a live postmaster that does not answer yet is still replaying.
    limit = timeout if pgdata is not None else unreachable_for
    return _wait(dsn, timeout, stopped, started=started, unreachable_for=limit)


def _wait(
    dsn: str,
    timeout: float,
    check_stopped: Callable[[], RecoveryOutcome | None],
    *,
    started: float,
    unreachable_for: float | None,
) -> RecoveryOutcome:
    answered = False
    silent_since: float | None = None
    while time.monotonic() - started < timeout:
        outcome = check_stopped()
        if outcome is not None:
            return outcome
        try:
            with connect(dsn) as conn:
                row = conn.execute(_STATUS).fetchone()
        except (ServerUnreachable, psycopg.Error):
            now = time.monotonic()
            silent_since = silent_since or now
            if answered and now - silent_since > GONE_AFTER_S:
                raise RecoveryFailed(
                    f"the server stopped answering during recovery ({GONE_AFTER_S:.0f} s)",
                    hint="it has probably stopped: its log says why (pass --pgdata to read it)",
                ) from None
            if not answered and unreachable_for is not None and now - started > unreachable_for:
                raise
            time.sleep(POLL_S)
            continue
        answered, silent_since = True, None
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
