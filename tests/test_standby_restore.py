"""`pg restore --standby`: a replica from the repository, on a real PostgreSQL server. The
primary it streams from is the operator's (`--primary-conninfo`), never the one the backup's own
configuration names; the password never reaches the output; a target or a conninfo without
--standby is refused before anything is written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from backup_engine.codecs import get_codec
from backup_engine.postgres.basebackup import BaseBackupOptions, take_base_backup
from backup_engine.postgres.connection import connect
from backup_engine.servers import LocalPostgresBackend
from backup_engine.storage import LocalStorage

pytestmark = pytest.mark.postgres


def _restore(repo: Path, pgdata: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backup_engine", "--repo", f"file://{repo}", "pg", "restore",
         "latest", "--pgdata", str(pgdata), "--no-progress", *args],
        capture_output=True, text=True, check=False, timeout=300,
        env={"PATH": "/usr/bin:/bin", "BACKUP_ENGINE_CONFIG": "/dev/null"},
    )  # fmt: skip


def test_a_standby_streams_from_the_operators_primary_only(
    backend: LocalPostgresBackend, tmp_path: Path
) -> None:
    source = backend.create()
    with connect(source.dsn()) as conn:  # what a backup of a former replica would carry
        conn.execute("ALTER SYSTEM SET primary_conninfo = 'host=evil.example user=x'")
    repo = tmp_path / "repo"
    repo.mkdir()
    take_base_backup(LocalStorage(repo), get_codec("zstd"), BaseBackupOptions(dsn=source.dsn()))

    refused = _restore(repo, tmp_path / "a", "--standby", "--target-time", "2026-12-06 03:00")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "takes no recovery target" in refused.stderr and not (tmp_path / "a").exists()
    alone = _restore(repo, tmp_path / "b", "--primary-conninfo", "host=db1")
    assert alone.returncode == 2 and "add --standby" in alone.stderr
    assert not (tmp_path / "b").exists()

    conninfo = f"{source.dsn()} password=s3cret"
    done = _restore(repo, tmp_path / "standby", "--standby", "--primary-conninfo", conninfo)
    assert done.returncode == 0, done.stderr
    assert "s3cret" not in done.stdout + done.stderr and "password=***" in done.stdout
    assert "never promotes" in done.stdout
    pgdata = tmp_path / "standby"
    assert (pgdata / "standby.signal").is_file() and not (pgdata / "recovery.signal").exists()
    auto = (pgdata / "postgresql.auto.conf").read_text()
    active = [line for line in auto.splitlines() if line.startswith("primary_conninfo")]
    assert active == [f"primary_conninfo = '{conninfo}'"], auto  # evil.example: commented out
    assert "# Removed by restore-drill" in auto and "evil.example" in auto

    again = _restore(repo, tmp_path / "c", "--standby", "--json")
    data = json.loads(again.stdout)
    assert again.returncode == 0 and data["standby"] is True
    assert "primary_conninfo" not in data["settings_written"] or not data["settings_written"][
        "primary_conninfo"]  # fmt: skip
