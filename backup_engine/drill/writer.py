"""A steady writer for drills: commits one timestamped row at a fixed interval, like an
application would, so recovery points and data loss (RPO) can be measured against real commits.
"""

from __future__ import annotations

import threading
from datetime import datetime

import psycopg

from backup_engine.postgres.connection import connect

HEARTBEAT_TABLE = """
CREATE TABLE IF NOT EXISTS heartbeat (
    id          bigserial PRIMARY KEY,
    written_at  timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


class HeartbeatWriter:
    """Start with `start()`; `stop()` joins the thread. Commits are autocommit, one row each."""

    def __init__(self, dsn: str, interval_s: float) -> None:
        self.dsn = dsn
        self.interval_s = interval_s
        self.rows = 0
        self.last_commit: datetime | None = None  # server time of the last acknowledged commit
        self.error: Exception | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat-writer", daemon=True)

    def start(self) -> HeartbeatWriter:
        with connect(self.dsn) as conn:
            conn.execute(HEARTBEAT_TABLE)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            with connect(self.dsn) as conn:
                while not self._stop.is_set():
                    row = conn.execute(
                        "INSERT INTO heartbeat DEFAULT VALUES RETURNING written_at"
                    ).fetchone()
                    self.last_commit = row[0] if row else None  # type: ignore[assignment]
                    self.rows += 1
                    self._stop.wait(self.interval_s)
        except psycopg.Error as exc:  # the server went away: that is what drills do to it
            if not self._stop.is_set():
                self.error = exc

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def newest_heartbeat(dsn: str) -> datetime | None:
    """The commit time of the newest heartbeat row a (restored) server holds."""
    with connect(dsn) as conn:
        table = conn.execute("SELECT to_regclass('heartbeat')").fetchone()
        if table is None or table[0] is None:
            return None
        row = conn.execute("SELECT max(written_at) FROM heartbeat").fetchone()
    return row[0] if row and isinstance(row[0], datetime) else None
