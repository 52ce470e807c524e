"""Steps for incremental backups (PostgreSQL 17 and later): chains, their restore, their
retention, and what is refused."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pytest_bdd import given, parsers, then, when

from backup_engine.codecs import get_codec
from backup_engine.drill.evidence import ScenarioRecord
from backup_engine.drill.markers import Marker
from backup_engine.drill.recovery import RestoredServer, recovery_from
from backup_engine.errors import BackupEngineError
from backup_engine.postgres.basebackup import BaseBackupOptions, take_base_backup
from backup_engine.postgres.catalog import BASE_BACKUPS
from backup_engine.postgres.chain import MIN_MAJOR
from backup_engine.postgres.connection import connect, server_facts
from backup_engine.postgres.manifest import FULL, INCREMENTAL, BaseBackupManifest
from backup_engine.postgres.restore import restore_base_backup
from backup_engine.postgres.targets import RecoveryTarget
from backup_engine.retention import RetentionPolicy, base_backup_decisions
from backup_engine.servers import PostgresBackend, PostgresServer
from backup_engine.storage import Storage

from .pitr_steps import Attempt, start_archiving_server
from .retention_steps import SimulatedHistory, simulate_days

CODEC = get_codec("zstd")


def _reload_summarize_wal(dsn: str, value: str) -> None:
    with connect(dsn) as conn:
        conn.execute(f"ALTER SYSTEM SET summarize_wal = {value}")
        conn.execute("SELECT pg_reload_conf()")


@given(
    "a running PostgreSQL 17 server archiving WAL to the repository, summarizing WAL",
    target_fixture="source_server",
)
def summarizing_server(pg_backend: PostgresBackend, repository: Storage) -> PostgresServer:
    """Skipped, naming the reason, where the local PostgreSQL is older than 17: incremental
    backups do not exist there (`backup-engine drill --pg-version 17` runs them in an image)."""
    server = start_archiving_server(pg_backend, repository, archive_timeout_s=60)
    facts = server_facts(server.dsn())
    if facts.major < MIN_MAJOR:
        server.destroy()
        pytest.skip(
            f"environment limit: incremental backups need PostgreSQL {MIN_MAJOR}, this host "
            f"runs {facts.version}; run: backup-engine drill --pg-version 17"
        )
    _reload_summarize_wal(server.dsn(), "on")
    return server


def incremental(repository: Storage, server: PostgresServer) -> BaseBackupManifest:
    options = BaseBackupOptions(dsn=server.dsn(), backup_type=INCREMENTAL)
    return take_base_backup(repository, CODEC, options)


@when("an incremental backup is taken")
def incremental_backup(
    repository: Storage, source_server: PostgresServer, backups_taken: list[BaseBackupManifest]
) -> None:
    backup = incremental(repository, source_server)
    assert backup.backup_type == INCREMENTAL, "a full backup was taken instead"
    backups_taken.append(backup)


@then(parsers.parse("the restore combined a chain of {count:d} backups"))
def combined(
    restored: RestoredServer, repository: Storage, drill_record: ScenarioRecord, count: int
) -> None:
    chain = restored.restore.chain
    drill_record.expect("backups combined by pg_combinebackup", count, len(chain))
    types = [BASE_BACKUPS.read(repository, backup_id).backup_type for backup_id in chain]
    drill_record.expect("their types, in order", [FULL] + [INCREMENTAL] * (count - 1), types)


@then("each incremental backup stored less than a quarter of the full one")
def smaller(backups_taken: list[BaseBackupManifest], drill_record: ScenarioRecord) -> None:
    full = backups_taken[0]
    assert full.backup_type == FULL
    for backup in backups_taken[1:]:
        drill_record.expect(
            f"bytes stored by incremental {backup.backup_id}",
            f"under {full.stored_bytes // 4} (a quarter of the full backup's {full.stored_bytes})",
            backup.stored_bytes, backup.stored_bytes < full.stored_bytes / 4,
        )  # fmt: skip


@when(
    parsers.parse(
        "a base backup is taken every day for {days:d} days, full on Sundays and incremental "
        "otherwise"
    ),
    target_fixture="history",
)
def weeks_of_backups(
    repository: Storage,
    source_server: PostgresServer,
    markers: dict[str, Marker],
    backups_taken: list[BaseBackupManifest],
    days: int,
) -> SimulatedHistory:
    # The simulated today is a Thursday, so the oldest daily backup the plan keeps (29 days
    # back) is a Wednesday: its chain reaches back past the 30 days to Sunday's full.
    now = datetime.now(UTC)
    now -= timedelta(days=(now.weekday() - 3) % 7)
    options = BaseBackupOptions(dsn=source_server.dsn(), backup_type=INCREMENTAL,
                                full_on="sunday")  # fmt: skip
    history = simulate_days(repository, source_server, markers, backups_taken, days, options, now)
    for day, backup in enumerate(history.backups):
        expected = FULL if backup.start_time.weekday() == 6 or day == 0 else INCREMENTAL
        assert backup.backup_type == expected, f"day {day}: {backup.backup_type}"
    return history


@then("every kept incremental backup has its whole chain")
def whole_chains(repository: Storage, drill_record: ScenarioRecord) -> None:
    kept = {b.backup_id: b for b in BASE_BACKUPS.list(repository).backups}
    broken = [b.backup_id for b in kept.values() if b.parent_id and b.parent_id not in kept]
    drill_record.expect("kept incrementals whose parent was deleted", [], broken)
    assert any(b.parent_id for b in kept.values()), "no incremental kept: nothing was proven"


@then("the kept base backups are the plan's table and the parents of kept incrementals")
def kept_table_and_parents(
    repository: Storage, history: SimulatedHistory, drill_record: ScenarioRecord
) -> None:
    policy = RetentionPolicy()
    by_id = {b.backup_id: b for b in history.backups}

    def in_table(backup: BaseBackupManifest) -> bool:
        age = history.now - backup.stop_time
        sunday = backup.stop_time.weekday() == 6
        return age <= timedelta(days=policy.daily_days) or (
            sunday and age <= timedelta(days=policy.weekly_days)
        )

    wanted = {b.backup_id for b in history.backups if in_table(b)}
    wanted.add(history.backups[-1].backup_id)
    for backup_id in list(wanted):
        parent = by_id[backup_id].parent_id
        while parent is not None:
            wanted.add(parent)
            parent = by_id[parent].parent_id
    kept = {b.backup_id for b in BASE_BACKUPS.list(repository).backups}
    drill_record.expect("base backups kept", sorted(wanted), sorted(kept))
    beyond = wanted - {b.backup_id for b in history.backups if in_table(b)}
    assert beyond, "no parent was kept beyond the plan's table: the chain rule was not tested"
    assert len(kept) < len(history.backups), "expire deleted nothing"
    decisions = base_backup_decisions(list(by_id.values()), policy, history.now)
    reasons = [d.reason for d in decisions if d.backup_id in beyond]
    drill_record.expect("why the extra ones are kept", "parent of kept incremental",
                        reasons, all(r.startswith("parent of kept") for r in reasons))  # fmt: skip


@when("the first backup's objects are deleted from the repository")
def delete_first(repository: Storage, backups_taken: list[BaseBackupManifest]) -> None:
    prefix = BASE_BACKUPS.backup_prefix(backups_taken[0].backup_id)
    for info in list(repository.list(prefix)):
        repository.delete(info.key)


@when("a restore of the latest backup into a new directory is attempted", target_fixture="attempt")
def attempt_chain_restore(repository: Storage, tmp_path: Path) -> Attempt:
    target = tmp_path / "restored-chain"
    try:
        recovery = recovery_from(repository, RecoveryTarget("latest"))
        restore_base_backup(repository, "latest", target, recovery=recovery)
    except BackupEngineError as exc:
        return Attempt(exc, target, [])
    return Attempt(None, target, [])


@then("the new directory was not created")
def not_created(attempt: Attempt, drill_record: ScenarioRecord) -> None:
    drill_record.expect(f"{attempt.target_dir} exists", False, attempt.target_dir.exists())
    leftovers = sorted(p.name for p in attempt.target_dir.parent.glob(".restored-chain.chain-*"))
    drill_record.expect("staging directories left", [], leftovers)


@when("summarize_wal is turned off")
def summaries_off(source_server: PostgresServer) -> None:
    _reload_summarize_wal(source_server.dsn(), "off")


@dataclass
class BackupAttempt:
    error: BackupEngineError | None


@when("an incremental backup is attempted", target_fixture="backup_attempt")
def attempt_incremental(repository: Storage, source_server: PostgresServer) -> BackupAttempt:
    try:
        incremental(repository, source_server)
    except BackupEngineError as exc:
        return BackupAttempt(exc)
    return BackupAttempt(None)


@then(parsers.parse('the backup is refused with "{text}"'))
def backup_refused(backup_attempt: BackupAttempt, drill_record: ScenarioRecord, text: str) -> None:
    found = str(backup_attempt.error) if backup_attempt.error else "not refused"
    drill_record.expect("backup refused", f"refused, saying {text!r}", found, text in found)


@then("the repository holds no base backup")
def no_backup(repository: Storage, drill_record: ScenarioRecord) -> None:
    keys = [info.key for info in repository.list(BASE_BACKUPS.prefix)]
    drill_record.expect("objects under postgres/base/", [], keys)
