"""Recoveries as a drill performs them, with the clock running (RTO)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from backup_engine.postgres.recovery import RecoveryOutcome, wait_for_recovery
from backup_engine.postgres.recovery_config import tool_command
from backup_engine.postgres.restore import Recovery, RestoreResult, restore_base_backup
from backup_engine.postgres.targets import RecoveryTarget
from backup_engine.servers.base import PostgresBackend, PostgresServer
from backup_engine.storage import Storage


@dataclass(frozen=True)
class RestoredServer:
    server: PostgresServer
    restore: RestoreResult
    rto_seconds: float  # restore start -> recovery finished (server promoted or paused)
    recovery: RecoveryOutcome


def recovery_from(
    storage: Storage, target: RecoveryTarget | None, *, archive_mode: str = "off"
) -> Recovery:
    """Recovery that fetches WAL from `storage` through this tool's wal-fetch."""
    command = tool_command(["pg", "wal-fetch", "%f", "%p"], repo_url=storage.url)
    return Recovery(command, target, archive_mode)


def restore_into_new_server(
    storage: Storage,
    ref: str,
    backend: PostgresBackend,
    *,
    target: RecoveryTarget | None = None,
    archive_mode: str = "off",
    settings: dict[str, str] | None = None,
) -> RestoredServer:
    """Restore backup `ref` into a fresh data directory, start a server on it and wait until
    it has recovered (to `target`; without one, to the end of the archive). Drills restore
    with archiving off unless a scenario is about archiving from the restored copy."""
    started = time.monotonic()
    data_dir = backend.new_data_dir()
    result = restore_base_backup(
        storage, ref, data_dir, recovery=recovery_from(storage, target, archive_mode=archive_mode)
    )
    server = backend.start_existing(
        data_dir, settings=settings or {}, env=storage.environment(), wait=False
    )
    outcome = wait_for_recovery(server)
    return RestoredServer(server, result, time.monotonic() - started, outcome)
