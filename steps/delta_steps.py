"""Steps about repairing a damaged server in place with a delta restore (`pg restore --delta`):
its own data directory rewritten where it differs from the backup, the rest left as it is."""

from __future__ import annotations

from pytest_bdd import parsers, then, when

from backup_engine.drill.evidence import ScenarioRecord
from backup_engine.drill.recovery import RestoredServer, record_restore, repair_in_place
from backup_engine.servers import PostgresBackend, PostgresServer
from backup_engine.storage import Storage


@when(
    "the server is stopped and repaired in place with a delta restore of the latest backup",
    target_fixture="restored",
)
def repair(
    repository: Storage,
    source_server: PostgresServer,
    pg_backend: PostgresBackend,
    drill_record: ScenarioRecord,
) -> RestoredServer:
    restored = repair_in_place(repository, "latest", pg_backend, source_server)
    record_restore(drill_record, restored)
    return restored


@then(parsers.parse("the delta restore wrote less than {percent:d}% of the backup besides its WAL"))
def wrote_little(restored: RestoredServer, drill_record: ScenarioRecord, percent: int) -> None:
    """The backup's own WAL (pg_wal/) was never in the damaged directory, which had moved on:
    it is written whole, a few segments whatever the database's size. The rest is compared."""
    delta, total = restored.restore.delta, restored.restore.restored_bytes
    written = delta.written - delta.wal_written if delta else total
    drill_record.expect(
        "bytes a delta restore wrote besides WAL", f"< {percent}% of {total}",
        f"{written} ({written / total:.2%}); {delta.kept if delta else 0} files unchanged",
        written < total * percent / 100,
    )  # fmt: skip
