"""`pg verify --archive` over a long archive: cold (every object read and hashed), then
incremental (what was found whole is remembered: only new segments are read), on file:// and
on the embedded S3 server.

A cluster made with 1 MiB WAL segments (initdb --wal-segsize=1, so SEGMENTS segments take
SEGMENTS MiB, not 16 times that) archives through `pg wal-push` into both repositories; a base
backup opens the archive; then SEGMENTS WAL switches, each after a small write. Figures, not
assertions. (pgBackRest's `verify` keeps no state between runs, pgbackrest#2828: every run of
it is a cold run.)

    SEGMENTS=1000 .venv/bin/python benchmarks/archive_verify.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from s3server import bench_s3

from backup_engine.postgres.connection import connect
from backup_engine.postgres.recovery_config import tool_command
from backup_engine.servers import LocalPostgresBackend

SEGMENTS = int(os.environ.get("SEGMENTS", "1000"))
MORE = 20  # segments added before the incremental run
STATE = Path(tempfile.mkdtemp(prefix="archive-verify-state-", dir="/var/tmp"))


def switches(dsn: str, count: int) -> None:
    with connect(dsn) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS tick (n int)")
        for n in range(count):
            conn.execute(f"INSERT INTO tick VALUES ({n})".encode())
            conn.execute("SELECT pg_switch_wal()")


def wait_archived(dsn: str, count: int, timeout: float = 1800) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connect(dsn) as conn:
            row = conn.execute(
                "SELECT archived_count, failed_count FROM pg_stat_archiver"
            ).fetchone()
        if row and int(str(row[0])) >= count:
            return
        time.sleep(0.5)
    raise SystemExit(f"the archiver did not reach {count} segments")


def verify(url: str, env: dict[str, str], *extra: str) -> tuple[float, dict[str, object]]:
    """As postgres, the repository's owner (the archiver wrote it); its state file in the
    benchmark's directory."""
    state = {"XDG_STATE_HOME": str(STATE)}
    argv = ["runuser", "-u", "postgres", "--", "env",
            *[f"{k}={v}" for k, v in {**env, **state}.items()],
            str(Path(sys.executable).parent / "backup-engine"), "--repo", url, "pg", "verify",
            "--archive", "--json", *extra]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"pg verify --archive failed: {done.stderr[-500:]}")
    return seconds, json.loads(done.stdout)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="archive-verify-", dir="/var/tmp"))
    os.chmod(work, 0o777)  # the archiver runs as postgres
    shutil.chown(STATE, "postgres")
    with bench_s3() as s3, LocalPostgresBackend() as servers:
        s3_store = s3.storage("verify")
        repos = {
            "file": (f"file://{work / 'repo'}", {}),
            "s3": (s3_store.url, s3_store.environment()),
        }
        (work / "repo").mkdir(mode=0o777)
        shutil.chown(work / "repo", "postgres")
        data = servers.new_data_dir()
        servers.run_pg("initdb", "--pgdata", str(data), "--username=postgres", "--auth=trust",
                       "--wal-segsize=1", "--no-sync")  # fmt: skip
        push = " && ".join(tool_command(["pg", "wal-push", "%p"], repo_url=url)
                           for url, _ in repos.values())  # fmt: skip
        server = servers.start_existing(
            data, settings={"wal_level": "replica", "archive_mode": "on", "archive_command": push,
                            "max_wal_size": "64MB"},
            env=s3_store.environment(),
        )  # fmt: skip
        dsn = server.dsn()
        for url, env in repos.values():  # as postgres: the archiver writes beside it
            subprocess.run(["runuser", "-u", "postgres", "--", "env", *[f"{k}={v}" for k, v in
                            env.items()], str(Path(sys.executable).parent / "backup-engine"),
                            "--repo", url, "pg", "backup", "--dsn", dsn, "--no-progress"],
                           check=True, capture_output=True)  # fmt: skip
        started = time.monotonic()
        switches(dsn, SEGMENTS)
        with connect(dsn) as conn:
            row = conn.execute("SELECT archived_count FROM pg_stat_archiver").fetchone()
        wait_archived(dsn, SEGMENTS)
        print(f"{SEGMENTS} segments of 1 MiB archived into both in "
              f"{time.monotonic() - started:.0f} s ({row})")  # fmt: skip
        rows = []
        for name, (url, env) in repos.items():
            cold, report = verify(url, env, "--reread")
            rows.append((name, "cold", cold, report["read"], report["remembered"]))
            again, report = verify(url, env)
            rows.append((name, "nothing new", again, report["read"], report["remembered"]))
        switches(dsn, MORE)
        with connect(dsn) as conn:
            total = int(str(conn.execute("SELECT archived_count FROM pg_stat_archiver")
                            .fetchone()[0]))  # type: ignore[index]  # fmt: skip
        wait_archived(dsn, total + MORE - 1)
        for name, (url, env) in repos.items():
            seconds, report = verify(url, env)
            rows.append((name, f"{MORE} new", seconds, report["read"], report["remembered"]))
    print(f"\n--- pg verify --archive over {SEGMENTS} segments ---")
    for name, what, seconds, read, remembered in rows:
        print(f"{name:5} {what:12} {seconds:7.2f} s   {read:5} read, {remembered:5} remembered")
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(STATE, ignore_errors=True)


if __name__ == "__main__":
    main()
