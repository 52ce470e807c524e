"""Steps for asynchronous WAL archiving: a server whose archive_command pushes in parallel
through the spool, and its worker killed in the middle of a push."""

from __future__ import annotations

import hashlib
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

from pytest_bdd import given, parsers, then, when

from backup_engine.codecs import get_codec
from backup_engine.drill.evidence import ScenarioRecord
from backup_engine.errors import BackupEngineError
from backup_engine.postgres.connection import connect
from backup_engine.postgres.wal import wal_fetch
from backup_engine.postgres.walasync import worker_pid
from backup_engine.postgres.walspool import PUSH_LOCK, is_segment_name, spool_of
from backup_engine.servers import PostgresBackend, PostgresServer
from backup_engine.storage import Storage

from .pitr_steps import start_archiving_server

ASYNC = {"BACKUP_ENGINE_WAL_PUSH_MODE": "async"}
KILL_AFTER = (0.03, 0.06, 0.09, 0.12, 0.02)  # seconds after a worker is first seen


@given(
    parsers.parse(
        "a running PostgreSQL server archiving WAL asynchronously to the repository "
        "with archive_timeout of {seconds:d} seconds"
    ),
    target_fixture="source_server",
)
def async_archiving_server(
    pg_backend: PostgresBackend, repository: Storage, seconds: int
) -> PostgresServer:
    return start_archiving_server(pg_backend, repository, archive_timeout_s=seconds, env=ASYNC)


def _write_segments(dsn: str, count: int) -> None:
    with connect(dsn) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS wal_pile (n int, pad text)")
        for n in range(count):  # about one 16 MB segment of WAL each
            conn.execute("INSERT INTO wal_pile SELECT %s, md5(g::text) "
                         "FROM generate_series(1, 110000) g", (n,))  # fmt: skip
        conn.execute("SELECT pg_switch_wal()")


def _is_this_tool(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"backup_engine" in cmdline or b"backup-engine" in cmdline


@when(
    parsers.parse(
        "{count:d} segments of WAL are written while every archive worker is killed mid-push"
    )
)
def kill_workers_mid_push(
    source_server: PostgresServer, repository: Storage, drill_record: ScenarioRecord, count: int
) -> None:
    """SIGKILL, as the OOM killer does, to every push worker seen while the WAL is written:
    segments are in flight or waiting at each kill, and the calls PostgreSQL makes meanwhile
    must never count one as archived that is not stored (they start new workers, and after
    repeated deaths push it themselves)."""
    pg_wal = source_server.data_dir / "pg_wal"
    lock = spool_of(pg_wal, repository.url) / PUSH_LOCK
    writer = threading.Thread(target=_write_segments, args=(source_server.dsn(), count))
    writer.start()
    killed: set[int] = set()
    seen: dict[int, float] = {}
    try:
        while writer.is_alive():
            time.sleep(0.002)
            pid = worker_pid(lock)
            if not pid or pid in killed or not _is_this_tool(pid):
                continue
            # A segment takes it 50-100 ms: kill at varied moments inside the first ones.
            alive = time.monotonic() - seen.setdefault(pid, time.monotonic())
            if alive >= KILL_AFTER[len(killed) % len(KILL_AFTER)]:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
    finally:
        writer.join()
    drill_record.expect("archive workers killed while WAL was written", "at least 1",
                        len(killed), passed=bool(killed))  # fmt: skip


@then("every segment PostgreSQL counts as archived is in the repository, intact")
def archived_segments_intact(
    source_server: PostgresServer, repository: Storage, drill_record: ScenarioRecord
) -> None:
    """Each segment PostgreSQL marked done (its archive_command answered 0) and still has in
    pg_wal is fetched back, checked against its recorded sha256 and compared with the file."""
    pg_wal = source_server.data_dir / "pg_wal"
    status = pg_wal / "archive_status"
    done = sorted(e[: -len(".done")] for e in os.listdir(status) if e.endswith(".done"))
    checked, lost = 0, []
    with tempfile.TemporaryDirectory() as scratch:
        for name in filter(is_segment_name, done):
            try:
                local = hashlib.sha256((pg_wal / name).read_bytes()).hexdigest()
            except FileNotFoundError:  # recycled by a checkpoint since: nothing to compare
                continue
            fetched = Path(scratch) / name
            try:
                wal_fetch(repository, name, fetched, get_codec("zstd"))
                stored = hashlib.sha256(fetched.read_bytes()).hexdigest()
            except BackupEngineError as exc:
                stored = f"not restorable: {exc.message}"
            checked += 1
            if stored != local:
                lost.append(f"{name} ({stored})")
    drill_record.expect("segments counted as archived and compared", True, checked > 0)
    drill_record.expect("counted as archived but not in the repository", "none",
                        ", ".join(lost) or "none")  # fmt: skip
