"""Steps about the WAL archive verified ahead of any restore (`pg verify --archive`)."""

from __future__ import annotations

from pathlib import Path

from pytest_bdd import parsers, then, when

from backup_engine.drill.evidence import ScenarioRecord
from backup_engine.postgres.archive_verify import ArchiveReport, verify_archive
from backup_engine.postgres.archiving import switch_and_wait_archived
from backup_engine.postgres.connection import connect
from backup_engine.postgres.wal import WAL_PREFIX, split_wal_key
from backup_engine.servers import PostgresServer
from backup_engine.storage import Storage


@when(parsers.parse("{count:d} more WAL segments are archived"), target_fixture="archived")
def archive_more(source_server: PostgresServer, repository: Storage, count: int) -> list[str]:
    names = []
    for n in range(count):
        with connect(source_server.dsn()) as conn:  # a switch with nothing written is a no-op
            conn.execute("CREATE TABLE IF NOT EXISTS wal_filler (n int)")
            conn.execute("INSERT INTO wal_filler VALUES (%s)", (n,))
        names.append(switch_and_wait_archived(source_server.dsn(), repository).name)
    return names


def _verify(repository: Storage, tmp_path: Path) -> ArchiveReport:
    return verify_archive(repository, state_file=tmp_path / "wal-verified.json")


@then("the WAL archive verifies")
def verifies(repository: Storage, tmp_path: Path, drill_record: ScenarioRecord) -> None:
    report = _verify(repository, tmp_path)
    drill_record.expect_all([
        ("archive problems", [], [*report.missing, *report.damaged, *report.broken], report.ok),
        ("objects read", ">= 1", report.read, report.read >= 1),
    ])  # fmt: skip


@when(
    "one archived segment is deleted and another has a bit flipped",
    target_fixture="damaged_segments",
)
def damage(repository: Storage, archived: list[str]) -> tuple[str, str]:
    keys = {}
    for info in repository.list(WAL_PREFIX):
        split = split_wal_key(info.key)
        if split is not None:
            keys[split[0]] = info.key
    gone, flipped = archived[-2], archived[-3]  # in the middle: the newest stays the end
    repository.delete(keys[gone])
    body = bytearray(repository.get_bytes(keys[flipped]))
    body[len(body) // 2] ^= 0x01
    repository.put_bytes(keys[flipped], bytes(body))  # what bit rot or a bad copy leaves
    return gone, keys[flipped]


@then("verifying the WAL archive names both before any restore")
def names_both(
    repository: Storage,
    tmp_path: Path,
    damaged_segments: tuple[str, str],
    drill_record: ScenarioRecord,
) -> None:
    gone, flipped = damaged_segments
    report = _verify(repository, tmp_path)
    drill_record.expect_all([
        ("segments missing", [gone], report.missing, report.missing == [gone]),
        ("objects damaged", [flipped], [k for k, _ in report.damaged],
         [k for k, _ in report.damaged] == [flipped]),
        ("objects read again", 1, report.read, report.read == 1),
    ])  # fmt: skip
