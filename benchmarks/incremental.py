"""A daily incremental backup against a full one, ours side by side with pgBackRest's, on
PostgreSQL 17, in one run on one server.

Builds a database with `pgbench -i -s SCALE` (60: about 0.9 GB), takes a full backup with each
tool, changes CHANGE_PERCENT of pgbench_accounts (a contiguous range of rows, as a day of
activity concentrated on recent data does), takes an incremental backup with each tool, then
restores each incremental into an empty directory. Prints seconds, bytes stored and peak RSS.

  ours        backup-engine pg backup --type full / --type incr (pg_basebackup --incremental,
              summarize_wal = on) to file://; the restore combines the chain (pg_combinebackup)
              and runs pg_verifybackup
  pgBackRest  --type=full / --type=incr to a posix repository (zst level 1, process-max 4), with
              block incremental (repo1-bundle, repo1-block), its finest-grained incremental

PostgreSQL 17 is needed: where the local server is older, the benchmark runs itself inside the
PostgreSQL 17 image (scripts/build-test-image.sh trixie), which has pgBackRest too.

    .venv/bin/python benchmarks/incremental.py           # SCALE=60 CHANGE_PERCENT=1
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from base_rates import Row, timed
from wal_rates import PgBackRest, query, sh

from backup_engine.postgres.binaries import find_pg_binaries
from backup_engine.servers import LocalPostgresBackend

SCALE = int(os.environ.get("SCALE", "60"))
CHANGE_PERCENT = float(os.environ.get("CHANGE_PERCENT", "1"))


def stored_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    if (find_pg_binaries().major or 0) < 17:
        from backup_engine.drill.in_image import run_in_image

        print("the local PostgreSQL is older than 17: running in the PostgreSQL 17 image")
        script = Path(__file__).resolve()
        code = run_in_image(17, [str(script)], Path.cwd(), [script.parent])
        raise SystemExit(code)
    work = Path(tempfile.mkdtemp(prefix="incremental-", dir="/var/tmp"))
    os.chmod(work, 0o755)
    shutil.chown(work, "postgres")
    engine = [sys.executable, "-m", "backup_engine"]
    lines: list[str] = []

    def report(key: str, row: Row, size: int = 0) -> tuple[float, int]:
        stored = f"{size / 1e6:9.1f} MB stored" if size else " " * 19
        line = f"{key:32} {row.seconds:7.2f} s {stored} {row.rss_mb:6.0f} MB RSS"
        print(line, flush=True)
        lines.append(line)
        return row.seconds, size

    settings = {"summarize_wal": "on", "max_wal_size": "8GB", "checkpoint_timeout": "1h",
                "archive_mode": "on", "archive_command": "true"}  # fmt: skip
    with LocalPostgresBackend() as servers:
        source = servers.create(settings=settings)
        dsn = source.dsn()
        sh(str(servers.binaries.path("pgbench")), "-i", "-s", str(SCALE), "-q", dsn,
           user="postgres")  # fmt: skip
        size = int(str(query(dsn, "SELECT pg_database_size('postgres')")[0]))
        print(f"database: {size / 1e6:.0f} MB (pgbench scale {SCALE}), PostgreSQL "
              f"{query(dsn, 'SHOW server_version')[0]}; {os.cpu_count()} cores")  # fmt: skip
        repo = work / "ours"
        repo.mkdir()
        ours = [*engine, "--repo", f"file://{repo}", "pg", "backup", "--dsn", dsn, "--no-progress"]
        pgbr = PgBackRest(work / "pgbr", source.data_dir, servers.socket_dir, source.port, None)
        config = pgbr.config("posix", s3=False, asynchronous=False)
        block = "repo1-bundle=y\nrepo1-block=y\n[bench]"  # block incremental needs bundling
        config.write_text(config.read_text().replace("[bench]", block))
        pgbr.stanza(config)
        pgbr_backup = ["pgbackrest", f"--config={config}", "--stanza=bench", "--no-archive-check",
                       "backup"]  # fmt: skip
        pgbr_repo = work / "pgbr" / "repo-posix"

        full = report("full: ours", timed([*ours, "--type", "full"]), stored_bytes(repo))
        before = stored_bytes(pgbr_repo)
        pgbr_full = report("full: pgBackRest",
                           timed([*pgbr_backup, "--type=full"], user="postgres"),
                           stored_bytes(pgbr_repo) - before)  # fmt: skip
        rows = int(SCALE * 100_000 * CHANGE_PERCENT / 100)
        sh(str(servers.binaries.path("psql")), dsn, "-qc",
           f"UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= {rows}",
           user="postgres")  # fmt: skip
        sh(str(servers.binaries.path("psql")), dsn, "-qc", "CHECKPOINT", user="postgres")
        print(f"changed {rows} rows of pgbench_accounts ({CHANGE_PERCENT:g} %)")
        before = stored_bytes(repo)
        incr = report("incremental: ours", timed([*ours, "--type", "incr"]),
                      stored_bytes(repo) - before)  # fmt: skip
        before = stored_bytes(pgbr_repo)
        pgbr_incr = report("incremental: pgBackRest",
                           timed([*pgbr_backup, "--type=incr"], user="postgres"),
                           stored_bytes(pgbr_repo) - before)  # fmt: skip
        for key, argv, user in (
            ("restore incremental: ours",
             [*engine, "--repo", f"file://{repo}", "pg", "restore", "latest", "--pgdata", "%D",
              "--no-progress"], None),
            ("restore incremental: pgBackRest",
             ["pgbackrest", f"--config={config}", "--stanza=bench", "--pg1-path=%D", "restore"],
             "postgres"),
        ):  # fmt: skip
            target = work / f"restore-{user or 'ours'}"
            target.mkdir()
            shutil.chown(target, "postgres")
            report(key, timed([a.replace("%D", str(target)) for a in argv], user=user))
            shutil.rmtree(target)
    print(f"\n--- incremental after {CHANGE_PERCENT:g} % changed, {size / 1e6:.0f} MB, one run ---")
    for line in lines:
        print(line)
    for name, (f_s, f_b), (i_s, i_b) in (
        ("ours", full, incr),
        ("pgBackRest", pgbr_full, pgbr_incr),
    ):
        print(
            f"{name}: the incremental took {i_s / f_s:.2f}x the full's time and stored "
            f"{i_b / f_b:.3f}x its bytes"
        )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
