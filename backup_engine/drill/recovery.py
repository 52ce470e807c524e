"""Recoveries as a drill performs them, with the clock running (RTO)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from backup_engine.drill.evidence import ScenarioRecord
from backup_engine.postgres.recovery import RecoveryOutcome
from backup_engine.postgres.recovery_config import fetch_command
from backup_engine.postgres.restore import Recovery, RestoreResult
from backup_engine.postgres.targets import RecoveryTarget
from backup_engine.servers.base import PostgresBackend, PostgresServer
from backup_engine.side_cluster import RecoveredServer, recover_in_place, recover_into_new_server
from backup_engine.storage import Storage


@dataclass(frozen=True)
class RestoredServer:
    server: PostgresServer
    restore: RestoreResult
    rto_seconds: float  # restore start -> recovery finished (server promoted or paused)
    recovery: RecoveryOutcome
    phases: tuple[tuple[str, float], ...] = ()


def restore_details(restored: RestoredServer) -> dict[str, Any]:
    """What the evidence records of a PostgreSQL restore: the backup (identity, times, age,
    size) and the WAL replayed on top of it."""
    plan = restored.restore.plan
    assert plan is not None
    backup = plan.backup
    age = (datetime.now(UTC) - backup.stop_time).total_seconds() / 3600
    return {
        "kind": "postgres base backup",
        "system_identifier": backup.system_identifier,
        "start_time": backup.start_time.isoformat(),
        "stop_time": backup.stop_time.isoformat(),
        "age_hours": round(age, 2),
        "stored_bytes": restored.restore.stored_bytes,  # of every backup of its chain
        "backup_type": backup.backup_type,
        "chain": list(restored.restore.chain),  # full first; one backup unless incremental
        "timeline": plan.timeline,
        "wal_replayed": {
            "from_lsn": backup.start_lsn,
            "to_lsn": restored.recovery.reached_lsn,
            "target": plan.target.describe(),
            "ended_on_timeline": restored.recovery.timeline,
        },
    }


def record_restore(record: ScenarioRecord, restored: RestoredServer) -> None:
    record.used_backup(
        restored.restore.backup_id, restored.restore.sha256, restore_details(restored)
    )
    for name, seconds in restored.phases:
        record.phase(name, seconds)


def recovery_from(
    storage: Storage, target: RecoveryTarget | None, *, archive_mode: str = "off"
) -> Recovery:
    """Recovery that fetches WAL from `storage` through this tool's wal-fetch."""
    command = fetch_command(storage.url)
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
    recovered = recover_into_new_server(
        storage, ref, backend, recovery_from(storage, target, archive_mode=archive_mode),
        settings=settings,
    )  # fmt: skip
    return _restored(recovered)


def repair_in_place(
    storage: Storage, ref: str, backend: PostgresBackend, server: PostgresServer
) -> RestoredServer:
    """Stop `server` and rewrite its own files with a delta restore of `ref` (to the end of
    the archive), start it and wait until it has recovered."""
    return _restored(recover_in_place(storage, ref, backend, server, recovery_from(storage, None)))


def _restored(recovered: RecoveredServer) -> RestoredServer:
    return RestoredServer(
        recovered.server, recovered.restore, recovered.seconds, recovered.recovery,
        recovered.phases,
    )  # fmt: skip
