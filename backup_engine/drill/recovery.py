"""Recoveries as a drill performs them, with the clock running (RTO)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from backup_engine.errors import ServerError
from backup_engine.postgres.restore import RestoreResult, restore_base_backup
from backup_engine.servers.base import PostgresBackend, PostgresServer
from backup_engine.storage import Storage

READY_TIMEOUT_S = 120


@dataclass(frozen=True)
class RestoredServer:
    server: PostgresServer
    restore: RestoreResult
    rto_seconds: float  # restore start -> server accepts connections


def restore_into_new_server(storage: Storage, ref: str, backend: PostgresBackend) -> RestoredServer:
    """Restore backup `ref` into a fresh data directory and start a server on it."""
    started = time.monotonic()
    data_dir = backend.new_data_dir()
    result = restore_base_backup(storage, ref, data_dir)
    server = backend.start_existing(data_dir)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not server.is_ready():  # pg_ctl --wait already waited; this is pg_isready's verdict
        if time.monotonic() > deadline:
            raise ServerError(f"restored server on {data_dir} never accepted connections")
        time.sleep(0.1)
    return RestoredServer(server=server, restore=result, rto_seconds=time.monotonic() - started)
