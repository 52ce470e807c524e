"""Base backup and restore, ours side by side with pgBackRest's, in one run on one server.

Builds a database with `pgbench -i -s SCALE` (60: about 0.9 GB; 200: about 3 GB), then times,
each as its own process (seconds, and peak RSS from GNU time):

  the read limit    pg_basebackup -D - -Ft -X fetch > /dev/null (BASE_BACKUP read whole)
  backup            backup-engine pg backup to file:// and to the embedded S3, compressed on
                    the server (the default) and here ([postgres] compress); pgBackRest full
                    backups (zst level 1, process-max 4) to a posix repository and, when stunnel
                    is installed, to the same S3 through TLS (bundled, as its docs advise for S3)
  restore           each of those backups into an empty directory: ours with pg_verifybackup
                    (the default), pgBackRest with its own checksums

and prints the ratios the production-rates issue sets: ours against pgBackRest on the same store,
and our backup against the read limit. Figures, not assertions.

    .venv/bin/python benchmarks/base_rates.py              # SCALE=60 REPEAT=3 (medians)
    SCALE=200 .venv/bin/python benchmarks/base_rates.py
    TABLESPACE=half SCALE=200 .venv/bin/python benchmarks/base_rates.py

TABLESPACE=half: pgbench at SCALE/2, and a copy of pgbench_accounts in a tablespace of its own:
about half the data outside the data directory; restores map it (--tablespace-map-all).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from s3server import bench_s3
from wal_rates import PgBackRest, query, sh

from backup_engine.postgres.connection import connect
from backup_engine.servers import LocalPostgresBackend

SCALE = int(os.environ.get("SCALE", "60"))
REPEAT = int(os.environ.get("REPEAT", "3"))
TABLESPACE = os.environ.get("TABLESPACE", "")  # "half": half the data in a tablespace


@dataclass
class Row:
    step: str
    key: str
    seconds: float
    rss_mb: float


def timed(argv: list[str], env: dict[str, str] | None = None, user: str | None = None) -> Row:
    """Seconds and peak RSS (GNU time; the largest process of the command)."""
    words = ["runuser", "-u", user, "--", *argv] if user else argv
    os.sync()  # what the step before wrote is on disk: no step pays for another's writeback
    with tempfile.NamedTemporaryFile("r") as rss:
        started = time.monotonic()
        done = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss.name, *words],
                              env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, check=False)  # fmt: skip
        seconds = time.monotonic() - started
        if done.returncode != 0:
            err = done.stderr.decode(errors="replace").strip()[-600:]
            raise SystemExit(f"{' '.join(argv[:5])} ... failed: {err}")
        peak = rss.read().split()
    return Row("", "", seconds, int(peak[-1]) / 1024 if peak else float("nan"))


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="base-rates-", dir="/var/tmp"))
    os.chmod(work, 0o755)
    shutil.chown(work, "postgres")
    engine = [str(Path(sys.executable).parent / "backup-engine")]
    rows: list[Row] = []

    def add(step: str, key: str, run: Callable[[], Row]) -> None:
        """The median of REPEAT runs (this machine's disk timings drift from run to run)."""
        runs = sorted((run() for _ in range(REPEAT)), key=lambda r: r.seconds)
        row = runs[len(runs) // 2]
        rows.append(Row(step, key, row.seconds, max(r.rss_mb for r in runs)))
        each = " ".join(f"{r.seconds:.2f}" for r in runs)
        print(f"{step:8} {key:22} {row.seconds:8.2f} s {row.rss_mb:6.0f} MB  ({each})", flush=True)

    def restore(key: str, argv: list[str], env: dict[str, str] | None = None) -> Callable[[], Row]:
        target = work / f"restore-{key.replace(' ', '-')}"

        def run() -> Row:
            target.mkdir()
            shutil.chown(target, "postgres")
            user = "postgres" if key.startswith("pgbackrest") else None
            if TABLESPACE:  # pgBackRest wants the mapped directory's parent to exist
                Path(f"{target}-ts").mkdir()
                shutil.chown(f"{target}-ts", "postgres")
            row = timed([a.replace("%D", str(target)) for a in argv], env, user=user)
            shutil.rmtree(target)
            shutil.rmtree(f"{target}-ts", ignore_errors=True)
            return row

        return run

    with bench_s3() as s3, LocalPostgresBackend() as servers:
        source = servers.create(settings={"max_wal_size": "8GB", "checkpoint_timeout": "1h"})
        dsn = source.dsn()
        scale = SCALE // 2 if TABLESPACE else SCALE
        sh(str(servers.binaries.path("pgbench")), "-i", "-s", str(scale), "-q", dsn,
           user="postgres")  # fmt: skip
        if TABLESPACE:
            space = work / "tablespace"
            space.mkdir()
            shutil.chown(space, "postgres")
            with connect(dsn) as conn:
                conn.execute(f"CREATE TABLESPACE bench LOCATION '{space}'".encode())
                conn.execute(b"CREATE TABLE accounts_copy TABLESPACE bench AS"
                             b" SELECT * FROM pgbench_accounts")  # fmt: skip
                conn.execute(b"CHECKPOINT")
        size = int(str(query(dsn, "SELECT pg_database_size('postgres')")[0]))
        where = ", half of it in a tablespace" if TABLESPACE else ""
        print(f"database: {size / 1e6:.0f} MB (pgbench scale {scale}{where}); "
              f"{os.cpu_count()} cores")  # fmt: skip
        basebackup = str(servers.binaries.path("pg_basebackup"))
        raw = [basebackup, "-d", dsn, "-D", "-", "-Ft", "-X", "fetch", "--checkpoint=fast", "-w"]
        if TABLESPACE:  # pg_basebackup cannot write two tablespaces to a pipe: read them here
            raw = [sys.executable, __file__, "read", dsn]
        timed(raw)  # warm the cache
        add("backup", "read limit", lambda: timed(raw))

        file_repo = work / "be-file"
        file_repo.mkdir()
        s3_env = s3.storage("be").environment()
        client = {"BACKUP_ENGINE_POSTGRES_COMPRESS": "client"}
        ours = {
            "ours file": (f"file://{file_repo}", {}),
            "ours s3": (s3.storage("be").url, s3_env),
            "ours file client": (f"file://{file_repo}-client", client),
            "ours s3 client": (s3.storage("be-client").url, {**s3.storage("be-client")
                                                              .environment(), **client}),
        }  # fmt: skip
        (work / "be-file-client").mkdir()
        for key, (url, env) in ours.items():
            argv = [*engine, "--repo", url, "pg", "backup", "--dsn", dsn, "--no-progress"]
            add("backup", key, partial(timed, argv, env))

        pgbr = PgBackRest(work / "pgbr", source.data_dir, servers.socket_dir, source.port, s3)
        configs: dict[str, Path] = {}
        if shutil.which("pgbackrest"):
            kinds = [("posix", False)] + ([("s3", True)] if pgbr.start_tls() else [])
            for kind, on_s3 in kinds:
                config = pgbr.config(kind, s3=on_s3, asynchronous=False)
                if on_s3:
                    config.write_text(
                        config.read_text().replace("[bench]", "repo1-bundle=y\n[bench]")
                    )
                pgbr.stanza(config)
                configs[f"pgbackrest {kind}"] = config
                argv = ["pgbackrest", f"--config={config}", "--stanza=bench", "--type=full",
                        "--no-archive-check", "backup"]  # fmt: skip
                add("backup", f"pgbackrest {kind}", partial(timed, argv, user="postgres"))
        else:
            print("pgbackrest is not installed (apt-get install pgbackrest): its rows are left out")

        mapped = ["--tablespace-map-all", "%D-ts"] if TABLESPACE else []
        for key, (url, env) in ours.items():
            if key.endswith("client"):
                continue  # the same restore: the stored bytes do not say where zstd ran
            argv = [*engine, "--repo", url, "pg", "restore", "latest", "--pgdata", "%D",
                    "--no-progress", *mapped]  # fmt: skip
            add("restore", key, restore(key, argv, env))
        for key, config in configs.items():
            argv = ["pgbackrest", f"--config={config}", "--stanza=bench", "--pg1-path=%D",
                    *(["--tablespace-map-all=%D-ts"] if TABLESPACE else []), "restore"]  # fmt: skip
            add("restore", key, restore(key, argv))

    print(f"\n--- base backup and restore, {size / 1e6:.0f} MB, one run "
          "(ratio: pgBackRest's seconds over ours, >1 means ours is faster) ---")  # fmt: skip
    by = {(r.step, r.key): r for r in rows}
    for r in rows:
        store = "posix" if " file" in r.key else r.key.split(" ")[1]
        peer = by.get((r.step, f"pgbackrest {store}"))
        ratio = f"{peer.seconds / r.seconds:5.2f}x" if peer and r.key.startswith("ours") else ""
        limit = by[("backup", "read limit")].seconds
        over = f"{r.seconds / limit:4.2f}x the read" if r.step == "backup" else ""
        print(f"{r.step:8} {r.key:22} {r.seconds:8.2f} s {r.rss_mb:6.0f} MB  {ratio:>6}  {over}")
    shutil.rmtree(work, ignore_errors=True)


def read_whole(dsn: str) -> None:
    """BASE_BACKUP (WAL included, uncompressed) read to the end and dropped: the read limit."""
    from backup_engine.postgres.replication import BackupRequest, open_replication

    with open_replication(dsn) as conn:
        for _ in conn.base_backup(BackupRequest(label="read limit")):
            pass


if __name__ == "__main__":
    if sys.argv[1:2] == ["read"]:
        read_whole(sys.argv[2])
    else:
        main()
