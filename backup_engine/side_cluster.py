"""A backup restored into a server of its own and recovered: written once, for everything that
needs one. The single-table restore's temporary side cluster and the drills' restored servers
both come from here: restore the backup into a new data directory of a server backend, start a
server on it (its environment carries the repository settings the restore_command needs), and
wait until recovery has ended."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from backup_engine.postgres.recovery import RecoveryOutcome, wait_for_recovery
from backup_engine.postgres.restore import Recovery, RestoreResult, restore_base_backup
from backup_engine.postgres.tablespaces import TablespaceMapping
from backup_engine.servers.base import PostgresBackend, PostgresServer, tablespaces_beside
from backup_engine.storage import Storage


@dataclass(frozen=True)
class RecoveredServer:
    server: PostgresServer
    restore: RestoreResult
    recovery: RecoveryOutcome
    seconds: float  # from the start of the restore until recovery ended

    @property
    def phases(self) -> tuple[tuple[str, float], ...]:
        """The restore's steps, then starting the server and replaying WAL until it ended."""
        restored = sum(s for _, s in self.restore.phases)
        return (*self.restore.phases, ("start the server and replay WAL", self.seconds - restored))


def recover_into_new_server(
    storage: Storage,
    ref: str,
    backend: PostgresBackend,
    recovery: Recovery,
    *,
    settings: Mapping[str, str] | None = None,
    bindir: str | None = None,
) -> RecoveredServer:
    started = time.monotonic()
    data_dir = backend.new_data_dir()
    # Never the source's tablespace directories: the backup's tablespaces go beside data_dir.
    spaces = TablespaceMapping(all_under=tablespaces_beside(data_dir))
    restored = restore_base_backup(
        storage, ref, data_dir, recovery=recovery, bindir=bindir, tablespaces=spaces
    )
    return _recovered(storage, backend, restored, settings, started)


def recover_in_place(
    storage: Storage,
    ref: str,
    backend: PostgresBackend,
    server: PostgresServer,
    recovery: Recovery,
    *,
    settings: Mapping[str, str] | None = None,
) -> RecoveredServer:
    """Stop `server`, rewrite its own data directory (and tablespaces, where they were) with a
    delta restore of `ref`, start it again and wait until recovery has ended: the repair of a
    damaged server that writes only what differs from the backup."""
    started = time.monotonic()
    server.stop()
    restored = restore_base_backup(storage, ref, server.data_dir, recovery=recovery, delta=True)
    return _recovered(storage, backend, restored, settings, started)


def _recovered(
    storage: Storage,
    backend: PostgresBackend,
    restored: RestoreResult,
    settings: Mapping[str, str] | None,
    started: float,
) -> RecoveredServer:
    server = backend.start_existing(
        restored.pgdata, settings=settings or {}, env=storage.environment(), wait=False
    )
    try:
        outcome = wait_for_recovery(server)
    except BaseException:
        server.destroy()
        raise
    return RecoveredServer(server, restored, outcome, time.monotonic() - started)
