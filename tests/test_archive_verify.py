"""`pg verify --archive`: a segment removed and one with a flipped bit are both named before
any restore; a nightly run reads only what is new, and what changed since."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from backup_engine.codecs import get_codec
from backup_engine.postgres.archive_verify import verify_archive
from backup_engine.postgres.timelines import segment_name
from backup_engine.postgres.wal import WAL_PREFIX, wal_push
from backup_engine.storage import LocalStorage
from tests.test_manifest import store_backup
from tests.test_retention import SEG, synthetic_backup


@pytest.fixture
def archive(tmp_path: Path) -> LocalStorage:
    """A backup starting in segment 2, and segments 2 to 8 archived by wal-push."""
    repo = LocalStorage(tmp_path / "repo")
    (tmp_path / "repo").mkdir()
    store_backup(repo, synthetic_backup(0, 2))
    pg_wal = tmp_path / "pg_wal"
    pg_wal.mkdir()
    for number in range(2, 9):
        segment = pg_wal / segment_name(1, number, SEG)
        segment.write_bytes(os.urandom(4096))
        wal_push(repo, segment, get_codec("zstd"))
    return repo


def _key(repo: LocalStorage, number: int) -> str:
    name = segment_name(1, number, SEG)
    (key,) = [i.key for i in repo.list(WAL_PREFIX) if i.key.startswith(WAL_PREFIX + name)]
    return key


def test_a_missing_and_a_damaged_segment_are_named(archive: LocalStorage, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    first = verify_archive(archive, state_file=state)
    assert first.ok and first.read == 7 and first.remembered == 0, first
    assert verify_archive(archive, state_file=state).read == 0  # nothing new: nothing read

    archive.delete(_key(archive, 5))
    damaged = archive.root / _key(archive, 6)
    body = bytearray(damaged.read_bytes())
    body[len(body) // 2] ^= 0x01
    damaged.write_bytes(bytes(body))
    report = verify_archive(archive, state_file=state)
    assert report.missing == [segment_name(1, 5, SEG)]
    assert [key for key, _ in report.damaged] == [_key(archive, 6)]
    assert report.read == 1 and report.remembered == 5  # only the changed object is read
    state.write_text("[" * 100_000)  # a damaged state file: everything is read again
    assert verify_archive(archive, state_file=state).read == 6


def test_the_command_names_both_and_exits_4(archive: LocalStorage, tmp_path: Path) -> None:
    archive.delete(_key(archive, 5))
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"),
           "BACKUP_ENGINE_CONFIG": os.devnull}  # fmt: skip
    argv = [sys.executable, "-m", "backup_engine", "--repo", archive.url, "pg", "verify",
            "--archive"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 4, done.stderr
    assert f"missing: {segment_name(1, 5, SEG)}" in done.stdout
    assert done.stderr.count("\n") == 1 and "1 missing, 0 damaged" in done.stderr
    assert (tmp_path / "state").is_dir()
    again = subprocess.run([*argv, "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 4 and '"read": 0' in again.stdout  # remembered, not read again


def test_check_deep_reports_the_archive(
    archive: LocalStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backup_engine.health import CRITICAL, OK, archive_finding

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert archive_finding(archive).state == OK
    archive.delete(_key(archive, 4))
    finding = archive_finding(archive)
    assert finding.state == CRITICAL and segment_name(1, 4, SEG) in finding.message


def test_the_verification_is_written_as_metrics_an_alert_reads(tmp_path: Path) -> None:
    from backup_engine.metrics import write_archive_metrics
    from backup_engine.postgres.archive_verify import ArchiveReport

    report = ArchiveReport(missing=["000000010000000000000007"], damaged=[("k", "sha256")],
                           read=3, remembered=40)  # fmt: skip
    out = tmp_path / "archive.prom"
    write_archive_metrics(out, report, now=1_700_000_000)
    text = out.read_text()
    assert 'restore_drill_wal_archive_problems{kind="missing"} 1.0' in text
    assert 'restore_drill_wal_archive_problems{kind="damaged"} 1.0' in text
    assert "restore_drill_wal_archive_objects_checked 43.0" in text
    assert "restore_drill_wal_archive_verified_timestamp_seconds 1.7e+09" in text
