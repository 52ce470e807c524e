"""Point-in-time recovery through the command line, as an operator runs it, against a real
server archiving into the embedded S3 server."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backup_engine.drill.embedded_s3 import EmbeddedS3
from backup_engine.drill.seed import seed_shop
from backup_engine.postgres.archiving import switch_and_wait_archived
from backup_engine.postgres.connection import connect
from backup_engine.postgres.recovery_config import tool_command
from backup_engine.postgres.wal import WAL_PREFIX
from backup_engine.servers import LocalPostgresBackend
from backup_engine.storage import S3Storage
from tests.operator_cli import cli

pytestmark = pytest.mark.postgres


@pytest.fixture
def repo(embedded_s3: EmbeddedS3) -> S3Storage:
    return embedded_s3.storage(f"cli-{os.urandom(4).hex()}")


def orders(dsn: str) -> int:
    with connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM orders").fetchone()
    return int(str(row[0])) if row else -1


def test_restore_to_a_named_point_with_the_cli(
    repo: S3Storage, backend: LocalPostgresBackend, tmp_path: Path
) -> None:
    archive = tool_command(["pg", "wal-push", "%p"], repo_url=repo.url)
    source = backend.create(
        settings={"archive_mode": "on", "archive_command": archive}, env=repo.environment()
    )
    seed_shop(source.dsn(), users=50)
    assert cli(repo, "pg", "backup", "--dsn", source.dsn()).returncode == 0
    point = cli(repo, "pg", "restore-point", "before-cleanup", "--dsn", source.dsn(), "--json")
    assert point.returncode == 0, point.stderr
    with connect(source.dsn()) as conn:
        conn.execute("DELETE FROM orders")
    switch_and_wait_archived(source.dsn(), repo)

    listing = json.loads(cli(repo, "pg", "list", "--json").stdout)
    assert [w["timeline"] for w in listing["recoverable_windows"]] == [1]

    too_early = cli(repo, "pg", "restore", "auto", "--pgdata", str(tmp_path / "x"),
                    "--target-time", "2001-01-01 00:00:00")  # fmt: skip
    assert too_early.returncode == 2
    assert "before the recoverable window" in too_early.stderr
    assert not (tmp_path / "x").exists()

    pgdata = backend.new_data_dir()
    restored = cli(repo, "pg", "restore", "auto", "--pgdata", str(pgdata),
                   "--target-name", "before-cleanup")  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    assert "recovery: to name 'before-cleanup' along timeline 1" in restored.stdout
    assert "archiving: off" in restored.stdout
    server = backend.start_existing(pgdata, env=repo.environment(), wait=False)
    waited = cli(repo, "pg", "wait-recovery", "--dsn", server.dsn(), "--pgdata", str(pgdata),
                 "--json")  # fmt: skip
    assert waited.returncode == 0, waited.stderr
    outcome = json.loads(waited.stdout)
    assert outcome["state"] == "promoted" and outcome["timeline"] == 2
    assert orders(server.dsn()) == 100  # 50 users x 2 orders, from before the DELETE
    assert orders(source.dsn()) == 0
    with connect(server.dsn()) as conn:  # the restore wrote it: the copy never archives
        assert conn.execute("SHOW archive_mode").fetchone() == ("off",)


def test_restore_table_with_the_cli_to_a_point_and_to_the_end(
    repo: S3Storage, backend: LocalPostgresBackend, tmp_path: Path
) -> None:
    archive = tool_command(["pg", "wal-push", "%p"], repo_url=repo.url)
    source = backend.create(
        settings={"archive_mode": "on", "archive_command": archive}, env=repo.environment()
    )
    seed_shop(source.dsn(), users=20)
    assert cli(repo, "pg", "backup", "--dsn", source.dsn()).returncode == 0
    assert cli(repo, "pg", "restore-point", "before-wipe", "--dsn", source.dsn()).returncode == 0
    with connect(source.dsn()) as conn:
        conn.execute("DELETE FROM orders")
    switch_and_wait_archived(source.dsn(), repo)

    def restore_table(*options: str) -> subprocess.CompletedProcess[str]:
        return cli(repo, "pg", "restore-table", "--table", "public.orders",
                   "--into", source.dsn(), "--json", *options)  # fmt: skip

    if os.geteuid() == 0:  # the server runs as postgres, which cannot enter pytest's tmp dir
        refused = restore_table("--as", "never", "--scratch-dir", str(tmp_path))
        assert refused.returncode != 0
        assert "'postgres' OS user, which cannot enter" in refused.stderr

    before = restore_table("--target-name", "before-wipe", "--as", "orders_before_wipe")
    assert before.returncode == 0, before.stderr
    assert json.loads(before.stdout)["rows"] == 40  # 20 users x 2 orders
    latest = restore_table("--as", "orders_latest")  # no target: the end of the archive
    assert latest.returncode == 0, latest.stderr
    assert json.loads(latest.stdout)["rows"] == 0  # the archive holds the wipe
    with connect(source.dsn()) as conn:
        row = conn.execute("SELECT count(*) FROM orders_before_wipe").fetchone()
        assert row is not None and row[0] == 40
        assert conn.execute("SELECT to_regclass('never')").fetchone() == (None,)
    assert orders(source.dsn()) == 0  # the damaged table is left alone


def test_wal_stream_command_ships_segments_until_stopped(
    repo: S3Storage, backend: LocalPostgresBackend, tmp_path: Path
) -> None:
    source = backend.create()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BACKUP_ENGINE"))}
    env.update(repo.environment())
    stream = subprocess.Popen(
        [sys.executable, "-m", "backup_engine", "--repo", repo.url, "pg", "wal-stream",
         "--dsn", source.dsn(), "--spool-dir", str(tmp_path / "spool"),
         "--partial-interval", "0.5"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not any(i.key.endswith(".partial.zst") for i in repo.list(WAL_PREFIX)):
            assert time.monotonic() < deadline, "no partial segment was shipped"
            assert stream.poll() is None, stream.stderr.read() if stream.stderr else ""
            time.sleep(0.2)
        with connect(source.dsn()) as conn:
            conn.execute("CREATE TABLE t AS SELECT generate_series(1, 1000) AS i")
            conn.execute("SELECT pg_switch_wal()")
        completed = re.compile(re.escape(WAL_PREFIX) + r"[0-9A-F]{24}\.zst$")
        while not any(completed.match(i.key) for i in repo.list(WAL_PREFIX)):
            assert time.monotonic() < deadline, "no completed segment was shipped"
            time.sleep(0.2)
    finally:
        stream.send_signal(signal.SIGTERM)
        _, err = stream.communicate(timeout=60)
    assert stream.returncode == 0, err
    assert "stopped:" in err and "segments" in err


def test_wait_recovery_reports_a_server_that_stopped_short_of_its_target(
    repo: S3Storage, backend: LocalPostgresBackend
) -> None:
    """A transaction id that never existed: PostgreSQL replays everything and stops with FATAL.
    wait-recovery says so with PostgreSQL's reason, instead of waiting for its 24 h timeout."""
    archive = tool_command(["pg", "wal-push", "%p"], repo_url=repo.url)
    source = backend.create(
        settings={"archive_mode": "on", "archive_command": archive}, env=repo.environment()
    )
    seed_shop(source.dsn(), users=10)
    listed = cli(repo, "pg", "backup", "--dsn", source.dsn(), "--json")
    assert listed.returncode == 0, listed.stderr
    switch_and_wait_archived(source.dsn(), repo)
    never = str(json.loads(listed.stdout)["next_xid"] + 10_000_000)
    for watch in ("--pgdata", "--dsn-only"):
        pgdata = backend.new_data_dir()
        restored = cli(
            repo, "pg", "restore", "auto", "--pgdata", str(pgdata), "--target-xid", never
        )
        assert restored.returncode == 0, restored.stderr
        server = backend.start_existing(pgdata, env=repo.environment(), wait=False)
        options = ["--pgdata", str(pgdata), "--log", str(server.log_file)]  # type: ignore[attr-defined]
        started = time.monotonic()
        waited = cli(repo, "pg", "wait-recovery", "--dsn", server.dsn(), "--timeout", "600",
                     *(options if watch == "--pgdata" else []))  # fmt: skip
        assert waited.returncode == 1, waited.stdout
        assert time.monotonic() - started < 300  # seconds, never the timeout
        if watch == "--pgdata":
            assert "before configured recovery target was reached" in waited.stderr
            assert "earlier target" in waited.stderr
        else:
            assert "stopped answering during recovery" in waited.stderr
        assert len(waited.stderr.strip().splitlines()) == 1
