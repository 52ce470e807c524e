"""Recoveries as a drill performs them, with the clock running (RTO)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from backup_engine.errors import ServerError
from backup_engine.postgres.recovery import RecoveryOutcome, wait_for_recovery
from backup_engine.postgres.recovery_config import tool_command
from backup_engine.postgres.restore import PointInTime, RestoreResult, restore_base_backup
from backup_engine.postgres.targets import RecoveryTarget
from backup_engine.servers.base import PostgresBackend, PostgresServer
from backup_engine.storage import Storage

READY_TIMEOUT_S = 120


@dataclass(frozen=True)
class RestoredServer:
    server: PostgresServer
    restore: RestoreResult
    rto_seconds: float  # restore start -> server accepts connections (recovery finished)
    recovery: RecoveryOutcome | None = None


def point_in_time(storage: Storage, target: RecoveryTarget) -> PointInTime:
    """Recovery that fetches WAL from `storage` through this tool's wal-fetch."""
    command = tool_command(["pg", "wal-fetch", "%f", "%p"], repo_url=storage.url)
    return PointInTime(target=target, restore_command=command)


def restore_into_new_server(
    storage: Storage,
    ref: str,
    backend: PostgresBackend,
    *,
    target: RecoveryTarget | None = None,
) -> RestoredServer:
    """Restore backup `ref` into a fresh data directory and start a server on it; with a
    target, wait until it has recovered to that point."""
    started = time.monotonic()
    data_dir = backend.new_data_dir()
    pitr = point_in_time(storage, target) if target else None
    result = restore_base_backup(storage, ref, data_dir, point_in_time=pitr)
    # The restored copy must not archive into the repository it was restored from.
    settings = {"archive_mode": "off"}
    if target is None:
        server = backend.start_existing(data_dir, settings=settings)
        _wait_ready(server)
        return RestoredServer(server, result, time.monotonic() - started)
    server = backend.start_existing(
        data_dir, settings=settings, env=storage.environment(), wait=False
    )
    outcome = wait_for_recovery(server)
    return RestoredServer(server, result, time.monotonic() - started, outcome)


def _wait_ready(server: PostgresServer) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not server.is_ready():  # pg_ctl --wait already waited; this is pg_isready's verdict
        if time.monotonic() > deadline:
            raise ServerError(f"restored server on {server.data_dir} never accepted connections")
        time.sleep(0.1)
