"""Steps about a standby rebuilt from the repository: restored with `--standby`, streaming from
the primary the operator names, so the primary carries no load of a new base backup."""

from __future__ import annotations

import time

from pytest_bdd import parsers, then, when

from backup_engine.drill.evidence import ScenarioRecord
from backup_engine.drill.markers import marker_exists
from backup_engine.postgres.connection import connect
from backup_engine.postgres.recovery_config import STANDBY_SIGNAL, fetch_command
from backup_engine.postgres.restore import restore_base_backup
from backup_engine.postgres.tablespaces import TablespaceMapping
from backup_engine.postgres.targets import Recovery
from backup_engine.servers import PostgresBackend, PostgresServer
from backup_engine.servers.base import tablespaces_beside
from backup_engine.storage import Storage

READY_WITHIN = 60.0


@when(
    "a standby of the server is restored from the latest backup, streaming from it",
    target_fixture="standby",
)
def restore_standby(
    repository: Storage,
    source_server: PostgresServer,
    pg_backend: PostgresBackend,
    drill_record: ScenarioRecord,
) -> PostgresServer:
    data_dir = pg_backend.new_data_dir()
    recovery = Recovery(fetch_command(repository.url), standby=True,
                        primary_conninfo=source_server.dsn())  # fmt: skip
    restored = restore_base_backup(
        repository, "latest", data_dir, recovery=recovery,
        tablespaces=TablespaceMapping(all_under=tablespaces_beside(data_dir)),
    )  # fmt: skip
    drill_record.expect_all([
        ("standby.signal written", True, (data_dir / STANDBY_SIGNAL).is_file(),
         (data_dir / STANDBY_SIGNAL).is_file()),
        ("primary_conninfo written", "the operator's",
         "the operator's" if restored.config and restored.config.written.get(
             "primary_conninfo") == source_server.dsn() else "other",
         bool(restored.config and restored.config.written.get("primary_conninfo")
              == source_server.dsn())),
    ])  # fmt: skip
    server = pg_backend.start_existing(
        data_dir, settings={}, env=repository.environment(), wait=False
    )
    deadline = time.monotonic() + READY_WITHIN
    while not server.is_ready() and time.monotonic() < deadline:
        time.sleep(0.2)
    drill_record.expect("standby accepting read-only connections", True, server.is_ready())
    return server


@then("the standby is in recovery, streaming from the primary")
def streaming(standby: PostgresServer, drill_record: ScenarioRecord) -> None:
    deadline = time.monotonic() + READY_WITHIN
    status = None
    while time.monotonic() < deadline:
        with connect(standby.dsn()) as conn:
            row = conn.execute(
                "SELECT pg_is_in_recovery(), (SELECT status FROM pg_stat_wal_receiver)"
            ).fetchone()
        status = row[1] if row else None
        if row and row[0] and status == "streaming":
            break
        time.sleep(0.2)
    drill_record.expect("standby's WAL receiver", "streaming", status)


@then(parsers.parse('marker "{name}" arrives on the standby within {seconds:d} seconds'))
def arrives(standby: PostgresServer, drill_record: ScenarioRecord, name: str, seconds: int) -> None:
    started = time.monotonic()
    while not marker_exists(standby.dsn(), name) and time.monotonic() - started < seconds:
        time.sleep(0.1)
    took = time.monotonic() - started
    drill_record.expect(f"marker {name!r} on the standby", "present",
                        "present" if marker_exists(standby.dsn(), name) else "missing")  # fmt: skip
    drill_record.expect_within(f"marker {name!r} replicated", took, seconds)
