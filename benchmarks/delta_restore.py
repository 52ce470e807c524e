"""Delta restore, ours side by side with pgBackRest's `--delta`, in one run on one server.

Builds a database with `pgbench -i -s SCALE` (200: about 3 GB), backs it up with both tools
(ours to file://, pgBackRest full to a posix repository, zst level 1, process-max 4), restores
it once into a held copy, then for each share of changed pages (CHANGED, default "1,10"
percent): copies the held directory, changes that share of the 8 KiB pages of every file under
base/ and global/ (scattered: a page in every 100/percent, as a replica that fell behind or a
failing disk leaves them), and times each tool's delta restore of it, plus a full restore into
an empty directory for reference. Bytes written are GNU time's file system outputs (512-byte
blocks). Figures, not assertions; the copies are checked equal to the backup by each tool
(pg_verifybackup for ours, pgBackRest's checksums for its own).

    SCALE=200 .venv/bin/python benchmarks/delta_restore.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from s3server import bench_s3
from wal_rates import PgBackRest, query, sh

from backup_engine.servers import LocalPostgresBackend

SCALE = int(os.environ.get("SCALE", "60"))
CHANGED = [float(p) for p in os.environ.get("CHANGED", "1,10").split(",")]
REPEAT = int(os.environ.get("REPEAT", "3"))  # full restores: the median is reported
PAGE = 8192


@dataclass
class Row:
    what: str
    tool: str
    seconds: float
    written_mb: float
    rss_mb: float


def timed(argv: list[str], user: str | None = None) -> tuple[float, float, str]:
    """Seconds, peak RSS (GNU time) and standard output of one command."""
    words = ["runuser", "-u", user, "--", *argv] if user else argv
    os.sync()
    with tempfile.NamedTemporaryFile("r") as out:
        started = time.monotonic()
        done = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", out.name, *words],
                              capture_output=True, text=True, check=False)  # fmt: skip
        os.sync()  # what it left dirty is part of its work
        seconds = time.monotonic() - started
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv[:6])} failed: {done.stderr[-600:]}")
        peak = out.read().split()[-1]
    return seconds, int(peak) / 1024, done.stdout


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of every regular file: a file written anew changes one or the other."""
    found = {}
    for root, _, names in os.walk(directory):
        for name in names:
            st = os.lstat(os.path.join(root, name))
            found[os.path.join(root, name)] = (st.st_ino, st.st_mtime_ns)
    return found


def rewritten_bytes(before: dict[str, tuple[int, int]], directory: Path) -> int:
    """The size of every file pgBackRest wrote (new, or its inode or time changed): it writes a
    file that differs whole. (GNU time's output count is no measure on this disk: a 8-byte
    write into a copied file counted as most of the file.)"""
    after = snapshot(directory)
    return sum(os.lstat(p).st_size for p, v in after.items() if before.get(p) != v)


def change_pages(directory: Path, percent: float) -> int:
    """Overwrite 8 bytes in one page of every 100/percent, counted across every file under
    base/ and global/ but pg_control (in a stable order); returns the pages changed."""
    every = max(1, round(100 / percent))
    seen = changed = 0
    for top in ("base", "global"):
        for root, dirs, names in sorted(os.walk(directory / top)):
            dirs.sort()
            for name in sorted(names):
                if name == "pg_control":
                    continue
                path = Path(root) / name
                pages = path.stat().st_size // PAGE
                first = -seen % every  # the next page of the global count to change
                with path.open("r+b") as fh:
                    for page in range(first, pages, every):
                        fh.seek(page * PAGE + 100)
                        fh.write(b"\xa5" * 8)
                        changed += 1
                seen += pages
    return changed


def copy_tree(source: Path, target: Path) -> None:
    subprocess.run(["cp", "-a", str(source), str(target)], check=True)


def main() -> None:
    if not shutil.which("pgbackrest"):
        raise SystemExit("pgbackrest is not installed (apt-get install pgbackrest)")
    work = Path(tempfile.mkdtemp(prefix="delta-", dir="/var/tmp"))
    os.chmod(work, 0o755)
    shutil.chown(work, "postgres")
    engine = [str(Path(sys.executable).parent / "backup-engine")]
    rows: list[Row] = []

    def add(what: str, tool: str, argv: list[str], user: str | None, target: Path) -> None:
        before = snapshot(target)
        seconds, rss, out = timed(argv, user)
        if tool == "ours":  # its own count of the bytes it wrote (--json)
            report = json.loads(out)
            written = report["delta"]["written"] if report["delta"] else report["restored_bytes"]
        else:
            written = rewritten_bytes(before, target)
        rows.append(Row(what, tool, seconds, written / 1e6, rss))
        print(f"{what:26} {tool:11} {seconds:7.2f} s {written / 1e6:8.1f} MB written "
              f"{rss:5.0f} MB", flush=True)  # fmt: skip

    with bench_s3() as s3, LocalPostgresBackend() as servers:
        source = servers.create(settings={"max_wal_size": "8GB", "checkpoint_timeout": "1h"})
        dsn = source.dsn()
        sh(str(servers.binaries.path("pgbench")), "-i", "-s", str(SCALE), "-q", dsn,
           user="postgres")  # fmt: skip
        size = int(str(query(dsn, "SELECT pg_database_size('postgres')")[0]))
        print(f"database: {size / 1e6:.0f} MB (pgbench scale {SCALE}); {os.cpu_count()} cores")
        repo = work / "be-file"
        repo.mkdir()
        url = f"file://{repo}"
        sh(*engine, "--repo", url, "pg", "backup", "--dsn", dsn, "--no-progress")
        pgbr = PgBackRest(work / "pgbr", source.data_dir, servers.socket_dir, source.port, s3)
        config = pgbr.config("posix", s3=False, asynchronous=False)
        pgbr.stanza(config)
        sh("pgbackrest", f"--config={config}", "--stanza=bench", "--type=full",
           "--no-archive-check", "backup", user="postgres")  # fmt: skip
        source.stop()  # the held copies are of a stopped cluster; nothing changes meanwhile

        held = work / "held"
        sh(*engine, "--repo", url, "pg", "restore", "latest", "--pgdata", str(held),
           "--no-progress")  # fmt: skip
        shutil.chown(held, "postgres")
        subprocess.run(["chown", "-R", "postgres:postgres", str(held)], check=True)

        def ours(target: Path, *extra: str) -> list[str]:
            return [*engine, "--repo", url, "pg", "restore", "latest", "--pgdata", str(target),
                    "--no-progress", "--json", *extra]  # fmt: skip

        def theirs(target: Path, *extra: str) -> list[str]:
            return ["pgbackrest", f"--config={config}", "--stanza=bench",
                    f"--pg1-path={target}", *extra, "restore"]  # fmt: skip

        # alternated, REPEAT times each: the first restore after the backup pays for evicting
        # pgbench's and the backup's pages, whichever tool runs it
        for _ in range(REPEAT):
            for tool, argv, user in (("ours", ours, None), ("pgBackRest", theirs, "postgres")):
                target = work / f"full-{tool}"
                target.mkdir()
                shutil.chown(target, "postgres")
                add("full restore, empty dir", tool, argv(target), user, target)
                shutil.rmtree(target)
        for percent in CHANGED:
            for tool, argv, user in (("ours", ours, None), ("pgBackRest", theirs, "postgres")):
                target = work / f"delta-{tool}"
                copy_tree(held, target)
                pages = change_pages(target, percent)
                what = f"delta, {percent:g}% pages changed"
                add(what, tool, argv(target, "--delta"), user, target)
                shutil.rmtree(target)
            print(f"  ({pages} pages changed, {pages * PAGE / 1e6:.0f} MB of pages)")
        target = work / "delta-same"
        copy_tree(held, target)
        for tool, argv, user in (("ours", ours, None), ("pgBackRest", theirs, "postgres")):
            add("delta, nothing changed", tool, argv(target, "--delta"), user, target)
            subprocess.run(["chown", "-R", "postgres:postgres", str(target)], check=True)

    print(f"\n--- delta restore, {size / 1e6:.0f} MB (ratio: pgBackRest's seconds over ours, "
          ">1 means ours is faster) ---")  # fmt: skip
    medians: dict[tuple[str, str], Row] = {}
    for key in dict.fromkeys((r.what, r.tool) for r in rows):
        runs = sorted((r for r in rows if (r.what, r.tool) == key), key=lambda r: r.seconds)
        medians[key] = runs[len(runs) // 2]
    by = medians
    for r in medians.values():
        peer = by.get((r.what, "pgBackRest"))
        ratio = f"{peer.seconds / r.seconds:5.2f}x" if peer and r.tool == "ours" else ""
        print(f"{r.what:26} {r.tool:11} {r.seconds:7.2f} s {r.written_mb:8.1f} MB written "
              f"{r.rss_mb:5.0f} MB  {ratio}")  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
