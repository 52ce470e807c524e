"""`pg restore --delta` on a real PostgreSQL server: a data directory that ran on after the backup
(rows changed, a stray file) is rewritten in place, writing a small part of the backup, and
starts with exactly the backup's rows. Refused before anything is written: a running server,
another cluster, files that are no cluster, --delta with --force. A delta restore stopped by a
damaged object leaves a directory no server starts on, and the next run finishes it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from backup_engine.codecs import get_codec
from backup_engine.postgres.basebackup import BaseBackupOptions, take_base_backup
from backup_engine.postgres.connection import connect
from backup_engine.postgres.delta_target import MARKER
from backup_engine.postgres.restore import restore_base_backup
from backup_engine.postgres.targets import Recovery
from backup_engine.servers import LocalPostgresBackend
from backup_engine.storage import LocalStorage

pytestmark = pytest.mark.postgres
OFFLINE = Recovery("false")  # no WAL archived: recovery ends with the backup (its pg_wal)
OFFLINE_RUN = {"restore_command": "false"}  # the repository is root's; the server is not


def _restore(repo: Path, pgdata: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backup_engine", "--repo", f"file://{repo}", "pg", "restore",
         "latest", "--pgdata", str(pgdata), "--no-progress", "--delta", *args],
        capture_output=True, text=True, check=False, timeout=300,
        env={"PATH": "/usr/bin:/bin", "BACKUP_ENGINE_CONFIG": "/dev/null"},
    )  # fmt: skip


def _rows(dsn: str) -> tuple[int, str]:
    with connect(dsn) as conn:
        row = conn.execute("SELECT count(*), md5(string_agg(v, ',' ORDER BY id)) FROM t").fetchone()
    assert row is not None
    count, digest = row
    return int(str(count)), str(digest)


def test_a_diverged_directory_is_rewritten_in_place(
    backend: LocalPostgresBackend, tmp_path: Path
) -> None:
    source = backend.create()
    with connect(source.dsn()) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO t SELECT i, md5(i::text) FROM generate_series(1, 20000) i")
    backed_up = _rows(source.dsn())
    repo = tmp_path / "repo"
    repo.mkdir()
    storage = LocalStorage(repo)
    take_base_backup(storage, get_codec("zstd"), BaseBackupOptions(dsn=source.dsn()))
    pgdata = backend.new_data_dir()
    restore_base_backup(storage, "latest", pgdata, recovery=OFFLINE)
    copy = backend.start_existing(pgdata)
    with connect(copy.dsn()) as conn:  # the copy runs on: rows change, a file appears
        conn.execute("UPDATE t SET v = 'changed' WHERE id % 500 = 0")
        conn.execute("DELETE FROM t WHERE id > 19900")
    assert _rows(copy.dsn()) != backed_up
    (pgdata / "stray.conf").write_text("work_mem = '1TB'\n")

    running = _restore(repo, pgdata)
    assert running.returncode == 2 and "running" in running.stderr, running.stderr
    copy.stop()
    forced = _restore(repo, pgdata, "--force")
    assert forced.returncode == 2 and "do not go together" in forced.stderr
    other = backend.create()
    other.stop()
    foreign = _restore(repo, other.data_dir)
    assert foreign.returncode == 2 and "another cluster" in foreign.stderr, foreign.stderr
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("mine")
    nocluster = _restore(repo, junk)
    assert nocluster.returncode == 2 and "no PostgreSQL cluster" in nocluster.stderr
    assert (junk / "notes.txt").read_text() == "mine" and (other.data_dir / "PG_VERSION").exists()

    done = _restore(repo, pgdata, "--json")
    assert done.returncode == 0, done.stderr
    delta = json.loads(done.stdout)["delta"]
    restored = json.loads(done.stdout)["restored_bytes"]
    assert 0 < delta["written"] < restored * 0.2, (delta, restored)
    assert delta["kept"] > 100 and delta["removed"] >= 1
    assert not (pgdata / "stray.conf").exists() and not (pgdata / MARKER).exists()
    again = backend.start_existing(pgdata, settings=OFFLINE_RUN)
    assert _rows(again.dsn()) == backed_up
    with connect(again.dsn()) as conn:
        conn.execute("UPDATE t SET v = 'again' WHERE id < 100")
    again.stop()

    base = next(repo.rglob("base.tar.zst"))  # damaged: the restore stops part-way
    genuine = base.read_bytes()
    base.write_bytes(genuine[:-100] + bytes(b ^ 0xFF for b in genuine[-100:]))
    broken = _restore(repo, pgdata)
    assert broken.returncode == 4 and "run the restore again" in broken.stderr, broken.stderr
    assert not (pgdata / "global" / "pg_control").exists() and (pgdata / MARKER).is_file()
    base.write_bytes(genuine)
    finished = _restore(repo, pgdata)
    assert finished.returncode == 0 and "delta: wrote" in finished.stdout, finished.stderr
    last = backend.start_existing(pgdata, settings=OFFLINE_RUN)
    assert _rows(last.dsn()) == backed_up
