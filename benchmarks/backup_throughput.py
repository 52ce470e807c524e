"""Backup throughput: the seed plan's method vs the read limit vs `backup-engine pg backup`.

Builds a ~1 GB database (pgbench scale 60, plus a table of random hex text that compresses far
less than pgbench's rows), then times in one run:

  (a) seed:    pg_basebackup -Ft -z into a local directory, then upload the files with boto3
  (b) limit:   pg_basebackup -D - -Ft -X fetch > /dev/null   (how fast the server can be read)
  (c) engine:  backup-engine pg backup into the embedded S3 server (moto, separate process)
  (d) engine:  backup-engine pg backup into a file:// repository (no S3 server in the way)

and prints seconds, MB/s (of database bytes read), peak RSS, and the ratios the walking-skeleton
issue sets as targets: (c) at least 5x faster than (a), within 3x of (b), peak RSS < 200 MB.
These are figures, not assertions. Usage:

    .venv/bin/python benchmarks/backup_throughput.py [--scale 60] [--text-mb 150]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from backup_engine.drill.embedded_s3 import (
    EMBEDDED_ACCESS_KEY,
    EMBEDDED_REGION,
    EMBEDDED_SECRET_KEY,
)
from backup_engine.net import free_port
from backup_engine.postgres.connection import connect
from backup_engine.servers import LocalPostgresBackend, PostgresServer

BUCKET = "bench"


@dataclass(frozen=True)
class Timing:
    name: str
    seconds: float
    peak_rss_mb: float
    stored_mb: float


def run_measured(
    argv: list[str], *, env: dict[str, str] | None = None, stdout: int | None = None
) -> tuple[float, float]:
    """Run a program; return (seconds, peak RSS in MB). The RSS comes from GNU time (Debian
    package `time`): wait4's figure for a child of this process includes this process's own
    RSS at the fork, which is what the driver holds (boto3, psycopg), not what the tool used."""
    with tempfile.NamedTemporaryFile("r") as rss:
        timer = (
            ["/usr/bin/time", "-f", "%M", "-o", rss.name] if Path("/usr/bin/time").exists() else []
        )
        started = time.monotonic()
        done = subprocess.run([*timer, *argv], env={**os.environ, **(env or {})}, stdout=stdout,
                              check=False)  # fmt: skip
        seconds = time.monotonic() - started
        if done.returncode != 0:
            raise SystemExit(f"{argv[0]} failed with exit code {done.returncode}")
        peak = rss.read().split()
    return seconds, int(peak[-1]) / 1024 if peak and peak[-1].isdigit() else float("nan")


def build_database(server: PostgresServer, scale: int, text_mb: int, pgbench: Path) -> int:
    print(
        f"building the database: pgbench scale {scale} + {text_mb} MB of random text ...",
        flush=True,
    )
    subprocess.run(
        [
            str(pgbench),
            "-i",
            "-s",
            str(scale),
            "-I",
            "dtGvp",
            "-q",
            "-h",
            server.host,
            "-p",
            str(server.port),
            "-U",
            "postgres",
            "postgres",
        ],
        check=True,
        capture_output=True,
    )
    rows = text_mb * 1024 * 1024 // 256
    with connect(server.dsn()) as conn:
        conn.execute(
            "CREATE TABLE notes AS SELECT i AS id,"
            " (SELECT string_agg(md5(random()::text || i || j), '') FROM generate_series(1, 8) j)"
            " AS body FROM generate_series(1, %s) i",
            (rows,),
        )
        conn.execute("CHECKPOINT")
        row = conn.execute("SELECT pg_database_size('postgres')").fetchone()
    assert row is not None
    return int(str(row[0]))


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    moto = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
    proc = subprocess.Popen(
        [moto, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=EMBEDDED_REGION,
        aws_access_key_id=EMBEDDED_ACCESS_KEY,
        aws_secret_access_key=EMBEDDED_SECRET_KEY,
    )
    for _ in range(100):
        try:
            client.create_bucket(Bucket=BUCKET)
            break
        except Exception:  # noqa: BLE001 - server still starting
            time.sleep(0.1)
    return proc, endpoint


UPLOAD_SCRIPT = """
import os, sys, boto3
client = boto3.client("s3", endpoint_url=sys.argv[1])
root = sys.argv[2]
sse = {"ServerSideEncryption": "AES256"}
for name in sorted(os.listdir(root)):
    client.upload_file(os.path.join(root, name), "bench", "seed/" + name, ExtraArgs=sse)
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=int, default=60)
    parser.add_argument("--text-mb", type=int, default=150)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-"))
    moto, endpoint = start_moto()
    s3_env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": EMBEDDED_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": EMBEDDED_SECRET_KEY,
        "AWS_REGION": EMBEDDED_REGION,
    }
    engine = [sys.executable, "-m", "backup_engine"]
    try:
        with LocalPostgresBackend() as backend:
            server = backend.create(settings={"max_wal_size": "8GB", "checkpoint_timeout": "1h"})
            size = build_database(
                server, args.scale, args.text_mb, backend.binaries.path("pgbench")
            )
            size_mb = size / 1e6
            print(f"database size: {size_mb:.0f} MB", flush=True)
            basebackup = str(backend.binaries.path("pg_basebackup"))
            common = ["-d", server.dsn(), "--checkpoint=fast", "-w"]
            timings: list[Timing] = []

            with open(os.devnull, "wb") as devnull:
                run_measured(
                    [basebackup, *common, "-D", "-", "-Ft", "-X", "fetch"], stdout=devnull.fileno()
                )  # warm the cache
                secs, rss = run_measured(
                    [basebackup, *common, "-D", "-", "-Ft", "-X", "fetch"], stdout=devnull.fileno()
                )
            timings.append(Timing("(b) limit: pg_basebackup to /dev/null", secs, rss, 0))

            local = work / "seed"
            secs1, rss1 = run_measured([basebackup, *common, "-D", str(local), "-Ft", "-z"])
            secs2, rss2 = run_measured(
                [sys.executable, "-c", UPLOAD_SCRIPT, endpoint, str(local)], env=s3_env
            )
            stored = sum(p.stat().st_size for p in local.iterdir()) / 1e6
            timings.append(
                Timing(
                    "(a) seed: pg_basebackup -Ft -z + upload",
                    secs1 + secs2,
                    max(rss1, rss2),
                    stored,
                )
            )
            shutil.rmtree(local)

            secs, rss = run_measured(
                [
                    *engine,
                    "--repo",
                    f"s3://{BUCKET}/engine",
                    "pg",
                    "backup",
                    "--dsn",
                    server.dsn(),
                    "--no-progress",
                ],
                env=s3_env,
                stdout=subprocess.DEVNULL,
            )
            timings.append(
                Timing(
                    "(c) backup-engine -> embedded S3", secs, rss, _stored_s3(endpoint, "engine/")
                )
            )

            repo = work / "repo"
            repo.mkdir()
            secs, rss = run_measured(
                [
                    *engine,
                    "--repo",
                    f"file://{repo}",
                    "pg",
                    "backup",
                    "--dsn",
                    server.dsn(),
                    "--no-progress",
                ],
                stdout=subprocess.DEVNULL,
            )
            stored = sum(p.stat().st_size for p in repo.rglob("*") if p.is_file()) / 1e6
            timings.append(Timing("(d) backup-engine -> file:// repo", secs, rss, stored))
    finally:
        moto.terminate()
        shutil.rmtree(work, ignore_errors=True)

    report(timings, size_mb)


def _stored_s3(endpoint: str, prefix: str) -> float:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=EMBEDDED_REGION,
        aws_access_key_id=EMBEDDED_ACCESS_KEY,
        aws_secret_access_key=EMBEDDED_SECRET_KEY,
    )
    listing = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sum(item["Size"] for item in listing.get("Contents", [])) / 1e6


def report(timings: list[Timing], size_mb: float) -> None:
    print()
    print(f"{'method':45} {'seconds':>8} {'MB/s':>8} {'peak RSS':>9} {'stored':>9}")
    for t in timings:
        rate = size_mb / t.seconds
        print(
            f"{t.name:45} {t.seconds:8.2f} {rate:8.0f} {t.peak_rss_mb:7.0f}MB {t.stored_mb:7.0f}MB"
        )
    by = {t.name[:3]: t for t in timings}
    a, b, c, d = by["(a)"], by["(b)"], by["(c)"], by["(d)"]
    print()
    print(f"(a)/(c) speed-up over the seed method: {a.seconds / c.seconds:5.1f}x   (target >= 5x)")
    print(f"(c)/(b) cost over the read limit:      {c.seconds / b.seconds:5.1f}x   (target <= 3x)")
    print(f"(d)/(b) same, without the S3 server:   {d.seconds / b.seconds:5.1f}x")
    print(f"(c) peak RSS:                          {c.peak_rss_mb:5.0f} MB (target < 200 MB)")


if __name__ == "__main__":
    main()
