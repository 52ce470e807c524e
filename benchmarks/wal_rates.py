"""WAL archive and replay rates, ours side by side with pgBackRest's, in one run on one server.

Drain: WAL piles up in pg_wal while archive_command is '' (SEGMENTS inserts of about 10 MB of
WAL each: the default 64 makes 42 segments of 16 MB; PostgreSQL keeps the
.ready files); then each archiver's command is set (ALTER SYSTEM + reload) and the time until
pg_stat_archiver's last_archived_wal reaches the last segment is measured. Every archiver
drains the very same segments (.done renamed back to .ready in between). Archivers:
backup-engine wal-push sync and async ([wal] push_mode) to file:// and to the embedded S3,
pgBackRest archive-push sync and async (archive-async, process-max=4) to a posix repository and,
when stunnel is installed, to the same S3 through TLS (pgBackRest's S3 client needs HTTPS).

Replay: a copy of a base backup taken before the pile-up recovers to the end of each archive
with that tool's fetch command (ours: wal-fetch with and without prefetching; pgBackRest:
archive-get sync and async); time from start to promotion, segments/s.

Backlog: `pgbench -c 8` for PGBENCH_SECONDS (120) with archive_timeout 60 and our async
archiver, on each store; the most segments waiting in pg_wal at once (sampled every 0.2 s).

Run (root, PostgreSQL 15, Debian packages pgbackrest and stunnel4):
    .venv/bin/python benchmarks/wal_rates.py            # SEGMENTS=64: 42 segments
    SEGMENTS=200 .venv/bin/python benchmarks/wal_rates.py
    ONLY="async file,async posix" PGBENCH_SECONDS=0 .venv/bin/python benchmarks/wal_rates.py
"""

from __future__ import annotations

import atexit
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from s3server import bench_s3

from backup_engine.drill.embedded_s3 import LoopbackS3
from backup_engine.postgres.connection import connect
from backup_engine.postgres.recovery_config import tool_command
from backup_engine.postgres.walspool import next_segment
from backup_engine.servers import LocalPostgresBackend

SEGMENTS = int(os.environ.get("SEGMENTS", "64"))
PGBENCH_SECONDS = int(os.environ.get("PGBENCH_SECONDS", "120"))
# drain only with the archivers whose name holds one of these (comma-separated)
ONLY = os.environ.get("ONLY", "").split(",")
MB = 16


@dataclass
class Row:
    phase: str
    key: str
    seconds: float
    segments: int
    note: str = ""

    def line(self, reference: dict[str, float]) -> str:
        rate = self.segments / self.seconds if self.seconds else 0.0
        ratio = ""
        if reference.get(self.phase):
            ratio = f"{rate / reference[self.phase]:.2f}x"
        return (f"{self.phase:7} {self.key:28} {self.seconds:8.2f} s {rate:7.2f} seg/s "
                f"{rate * MB:7.1f} MB/s  {ratio:>7}  {self.note}")  # fmt: skip


def sh(*argv: str, user: str | None = None, check: bool = True) -> str:
    words = ["runuser", "-u", user, "--", *argv] if user else list(argv)
    done = subprocess.run(words, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def query(dsn: str, sql: str) -> tuple[object, ...]:
    with connect(dsn) as conn:
        row = conn.execute(sql.encode()).fetchone()
    return tuple(row) if row else ()


def set_archive_command(dsn: str, command: str) -> None:
    with connect(dsn) as conn:
        conn.execute(b"ALTER SYSTEM SET archive_command = " + _literal(command).encode())
        conn.execute("SELECT pg_reload_conf()")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class PgBackRest:
    """pgBackRest repositories (posix, and S3 through stunnel when it is installed)."""

    def __init__(self, work: Path, data_dir: Path, socket_dir: Path, port: int,
                 s3: LoopbackS3 | None) -> None:  # fmt: skip
        self.work = work
        self.data_dir = data_dir
        self.socket_dir = socket_dir
        self.port = port
        self.s3 = s3
        self.tls_port = 0
        work.mkdir(parents=True, exist_ok=True)
        shutil.chown(work, "postgres")

    def start_tls(self) -> bool:
        if self.s3 is None or not shutil.which("stunnel"):
            return False
        tls = self.work / "tls"
        tls.mkdir(exist_ok=True)
        key, cert = str(tls / "key.pem"), str(tls / "cert.pem")
        sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
           "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert)  # fmt: skip
        from backup_engine.net import free_port

        self.tls_port = free_port()
        endpoint = self.s3.endpoint_url.rsplit(":", 1)[1].rstrip("/")
        (tls / "stunnel.conf").write_text(
            f"foreground = yes\npid =\n[s3]\naccept = 127.0.0.1:{self.tls_port}\n"
            f"connect = 127.0.0.1:{endpoint}\ncert = {tls / 'cert.pem'}\nkey = {tls / 'key.pem'}\n"
        )
        quiet = subprocess.DEVNULL
        self.stunnel = subprocess.Popen(["stunnel", str(tls / "stunnel.conf")],
                                        stdout=quiet, stderr=quiet)  # fmt: skip
        atexit.register(self.stunnel.terminate)  # also when a step fails: never left running
        time.sleep(0.5)
        return True

    def config(self, name: str, *, s3: bool, asynchronous: bool) -> Path:
        lines = ["[global]", "compress-type=zst", "compress-level=1", "log-level-console=warn",
                 "log-level-file=off", "start-fast=y", "process-max=4",
                 f"spool-path={self.work / ('spool-' + name)}"]  # fmt: skip
        if s3:
            assert self.s3 is not None
            env = self.s3.storage("x").environment()
            lines += ["repo1-type=s3", "repo1-s3-endpoint=127.0.0.1",
                      f"repo1-storage-port={self.tls_port}", "repo1-s3-uri-style=path",
                      "repo1-storage-verify-tls=n", f"repo1-s3-bucket={self.s3.bucket}",
                      "repo1-s3-region=us-east-1",
                      f"repo1-s3-key={env.get('AWS_ACCESS_KEY_ID', 'testing')}",
                      f"repo1-s3-key-secret={env.get('AWS_SECRET_ACCESS_KEY', 'testing')}",
                      f"repo1-path=/pgbr-{name}"]  # fmt: skip
        else:
            lines += [f"repo1-path={self.work / ('repo-' + name)}"]
        if asynchronous:
            lines += ["archive-async=y"]
        lines += ["[bench]", f"pg1-path={self.data_dir}", f"pg1-socket-path={self.socket_dir}",
                  f"pg1-port={self.port}", "pg1-user=postgres"]  # fmt: skip
        path = self.work / f"{name}.conf"
        path.write_text("\n".join(lines) + "\n")
        shutil.chown(path, "postgres")
        return path

    def stanza(self, config: Path) -> None:
        sh("pgbackrest", f"--config={config}", "--stanza=bench", "stanza-create", user="postgres")


def ready_again(data_dir: Path, names: list[str]) -> None:
    status = data_dir / "pg_wal" / "archive_status"
    for name in names:
        done = status / f"{name}.done"
        if done.exists():
            done.rename(status / f"{name}.ready")
    shutil.rmtree(data_dir / "pg_wal" / ".restore-drill", ignore_errors=True)


def drain(dsn: str, names: list[str], command: str, timeout: float = 1800) -> float:
    """Seconds until PostgreSQL counted every one of `names` archived by `command`."""
    before, failed = query(dsn, "SELECT archived_count, failed_count FROM pg_stat_archiver")
    started = time.monotonic()
    set_archive_command(dsn, command)
    while time.monotonic() - started < timeout:
        done, now_failed = query(dsn, "SELECT archived_count, failed_count FROM pg_stat_archiver")
        if now_failed != failed:
            raise SystemExit(f"{command}: archive_command failed (see the server log)")
        if int(str(done)) - int(str(before)) >= len(names):
            elapsed = time.monotonic() - started
            set_archive_command(dsn, "")
            return elapsed
        time.sleep(0.02)
    raise SystemExit(f"{command}: did not drain within {timeout} s")


def backlog_under_pgbench(servers: LocalPostgresBackend, dsn: str,
                          command: str) -> tuple[int, float]:  # fmt: skip
    """The most segments waiting to be archived at once while pgbench -c 8 writes, and the
    WAL rate it wrote (MB/s)."""
    set_archive_command(dsn, command)
    waiting = "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'"
    while query(dsn, waiting) != (0,):  # what pgbench -i left: archived before measuring
        time.sleep(0.1)
    with connect(dsn) as conn:
        conn.execute("ALTER SYSTEM SET archive_timeout = 60")
        conn.execute("SELECT pg_reload_conf()")
        start_lsn = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
    pgbench = str(servers.binaries.path("pgbench"))
    most = 0
    started = time.monotonic()
    with tempfile.TemporaryFile() as errors:  # not a pipe: nobody reads it while pgbench runs
        bench = subprocess.Popen(["runuser", "-u", "postgres", "--", pgbench, "-c", "8", "-j",
                                  "2", "-T", str(PGBENCH_SECONDS), "-n", dsn],
                                 stdout=subprocess.DEVNULL, stderr=errors)  # fmt: skip
        while bench.poll() is None:
            (ready,) = query(dsn, waiting)
            most = max(most, int(str(ready)))
            time.sleep(0.2)
        if bench.returncode != 0:
            errors.seek(0)
            raise SystemExit(f"pgbench failed: {errors.read().decode(errors='replace')[-500:]}")
    elapsed = time.monotonic() - started
    with connect(dsn) as conn:
        row = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)",
                           (start_lsn[0] if start_lsn else "0/0",)).fetchone()  # fmt: skip
    set_archive_command(dsn, "")
    return most, float(str(row[0]) if row else 0) / elapsed / (1 << 20)


def replay(servers: LocalPostgresBackend, base: Path, fetch: str, env: dict[str, str],
           marker: int) -> tuple[float, str]:  # fmt: skip
    """Seconds to promotion, and for ours how many calls the prefetch spool answered."""
    target = servers.new_data_dir()
    shutil.rmtree(target)
    shutil.copytree(base, target, symlinks=True)
    fetch = fetch.replace("%D", str(target))
    spool = Path(f"{target}.spool")
    spool.mkdir(exist_ok=True)
    shutil.chown(spool, "postgres")
    with (target / "postgresql.auto.conf").open("a") as conf:
        conf.write(f"restore_command = {_literal(fetch)}\narchive_mode = off\n"
                   "recovery_target_timeline = 'current'\n")  # fmt: skip
    (target / "recovery.signal").touch()
    started = time.monotonic()
    server = servers.start_existing(target, env=env, wait=False)
    while time.monotonic() - started < 1800:
        try:
            promoted = query(server.dsn(), "SELECT pg_is_in_recovery()") == (False,)
        except Exception:  # noqa: BLE001 - not accepting connections yet
            promoted = False
        if promoted:
            elapsed = time.monotonic() - started
            found = query(server.dsn(), "SELECT max(n) FROM pile")[0]
            if found != marker:
                raise SystemExit(f"{fetch}: replay ended at {found}, expected {marker}")
            log_file = getattr(server, "log_file", None)  # local servers log to a file
            log = Path(log_file).read_text(errors="replace") if log_file else ""
            hits = log.count("restored from the prefetch spool")
            calls = log.count('" from archive')  # PostgreSQL's line for every segment restored
            server.destroy()
            return elapsed, f"{hits} of {calls} calls from the spool" if hits else ""
        time.sleep(0.05)
    raise SystemExit(f"{fetch}: did not finish replay")


def installed_tool(work: Path) -> str:
    """This checkout built as a wheel and installed in its own virtualenv, as users run it
    (an editable install pays ~15 ms more per call for its import hook)."""
    checkout = Path(__file__).resolve().parent.parent
    sh(sys.executable, "-m", "pip", "wheel", str(checkout), "--no-deps", "-q", "-w",
       str(work / "dist"))  # fmt: skip
    wheel = next((work / "dist").glob("restore_drill-*.whl"))
    sh(sys.executable, "-m", "venv", str(work / "venv"))
    sh(str(work / "venv/bin/pip"), "install", "-q", "--disable-pip-version-check", str(wheel))
    return str(work / "venv/bin/python")


def tool(python: str, subcommand: list[str], url: str) -> str:
    return tool_command(subcommand, repo_url=url).replace(shlex.quote(sys.executable), python, 1)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="wal-rates-", dir="/var/tmp"))
    os.chmod(work, 0o755)
    shutil.chown(work, "postgres")
    python = installed_tool(work)  # world-readable: PostgreSQL runs it as postgres
    rows: list[Row] = []
    with bench_s3() as s3, LocalPostgresBackend() as servers:
        file_repo = work / "be-file"
        file_repo.mkdir()
        shutil.chown(file_repo, "postgres")
        s3_sync, s3_async = s3.storage("be-sync"), s3.storage("be-async")
        env = {**s3_sync.environment(), "BACKUP_ENGINE_WAL_PUSH_CONCURRENCY": "4"}
        settings = {"archive_mode": "on", "archive_command": "", "max_wal_size": "16GB",
                    "checkpoint_timeout": "1h", "wal_keep_size": "8GB"}  # fmt: skip
        source = servers.create(settings=settings, env=env)
        dsn = source.dsn()
        with connect(dsn) as conn:
            conn.execute("CREATE TABLE pile (n int, pad text)")
        base = work / "base"
        sh(str(servers.binaries.path("pg_basebackup")), "-d", dsn, "-D", str(base), "-X", "stream",
           "--checkpoint=fast", user="postgres")  # fmt: skip
        set_archive_command(dsn, "true")  # what came before the base backup: not measured
        while query(dsn, "SELECT count(*) FROM pg_ls_archive_statusdir() "
                         "WHERE name LIKE '%.ready'") != (0,):  # fmt: skip
            time.sleep(0.05)
        set_archive_command(dsn, "")
        first = str(query(dsn, "SELECT pg_walfile_name(pg_current_wal_lsn())")[0])
        with connect(dsn) as conn:
            for n in range(1, SEGMENTS + 1):  # about 10 MB of WAL each
                conn.execute("INSERT INTO pile SELECT %s, md5(g::text) "
                             "FROM generate_series(1, 110000) g", (n,))  # fmt: skip
            last = str(query(dsn, "SELECT pg_walfile_name(pg_current_wal_lsn())")[0])
            conn.execute("SELECT pg_switch_wal()")
        names = [first]
        while names[-1] != last:
            names.append(next_segment(names[-1], MB << 20))
        count = len(names)
        print(f"{count} segments piled up ({count * MB} MB); {os.cpu_count()} cores", flush=True)

        def push(url: str) -> str:
            return tool(python, ["pg", "wal-push", "%p"], url)

        asynchronous = "BACKUP_ENGINE_WAL_PUSH_MODE=async "
        archivers = {
            "backup-engine sync file": push(f"file://{file_repo}/sync"),
            "backup-engine async file": asynchronous + push(f"file://{file_repo}/async"),
            "backup-engine sync s3": push(s3_sync.url),
            "backup-engine async s3": asynchronous + push(s3_async.url),
        }
        port: int = source.port
        pgbr = PgBackRest(work / "pgbr", source.data_dir, servers.socket_dir, port, s3)
        pgbr_configs: dict[str, Path] = {}
        if shutil.which("pgbackrest"):
            kinds = [("posix", False)] + ([("s3", True)] if pgbr.start_tls() else [])
            for kind, on_s3 in kinds:
                for mode in ("sync", "async"):
                    config = pgbr.config(f"{kind}-{mode}", s3=on_s3, asynchronous=mode == "async")
                    pgbr.stanza(config)
                    pgbr_configs[f"pgbackrest {mode} {kind}"] = config
                    archivers[f"pgbackrest {mode} {kind}"] = (
                        f"pgbackrest --config={config} --stanza=bench archive-push %p"
                    )
        else:
            print("pgbackrest is not installed (apt-get install pgbackrest): its rows are left out")
        drained: set[str] = set()
        for key, command in archivers.items():
            if not any(part in key for part in ONLY):
                continue
            drained.add(key)
            ready_again(source.data_dir, names)
            seconds = drain(dsn, names, command)
            rows.append(Row("drain", key, seconds, count))
            print(rows[-1].line({}), flush=True)

        marker = SEGMENTS
        for stale in base.parent.glob("data*.spool"):
            shutil.rmtree(stale, ignore_errors=True)

        def fetch(url: str) -> str:
            return tool(python, ["pg", "wal-fetch", "%f", "%p"], url)

        no_prefetch = "BACKUP_ENGINE_WAL_FETCH_AHEAD=0 "
        fetches: dict[str, str] = {}  # each reads the archive its sync archiver drained into
        if "backup-engine sync file" in drained:
            fetches["backup-engine sync file"] = no_prefetch + fetch(f"file://{file_repo}/sync")
            fetches["backup-engine prefetch file"] = fetch(f"file://{file_repo}/sync")
        if "backup-engine sync s3" in drained:
            fetches["backup-engine sync s3"] = no_prefetch + fetch(s3_sync.url)
            fetches["backup-engine prefetch s3"] = fetch(s3_sync.url)
        for key, config in pgbr_configs.items():
            if " sync " in key and key in drained:
                kind = key.rsplit(" ", 1)[1]
                get = (
                    f'pgbackrest --config={config} --stanza=bench --pg1-path=%D archive-get %f "%p"'
                )
                fetches[f"pgbackrest sync {kind}"] = get
                fetches[f"pgbackrest async {kind}"] = get.replace(
                    "archive-get", "--archive-async --spool-path=%D.spool archive-get")  # fmt: skip
        for key, command in fetches.items():
            seconds, note = replay(servers, base, command, env, marker)
            rows.append(Row("replay", key, seconds, count, note))
            print(rows[-1].line({}), flush=True)

        backlogs = []
        if PGBENCH_SECONDS:
            sh(str(servers.binaries.path("pgbench")), "-i", "-s", "10", "-q", dsn, user="postgres")
            for key in ("backup-engine async file", "backup-engine async s3"):
                most, rate = backlog_under_pgbench(servers, dsn, archivers[key])
                backlogs.append(f"backlog {key:28} pgbench -c 8 for {PGBENCH_SECONDS} s, "
                                f"{rate:5.1f} MB/s of WAL: at most {most} segments "
                                "waiting")  # fmt: skip
                print(backlogs[-1], flush=True)

    print("\n--- WAL rates, one run, one server (ratio: against pgBackRest async, same store) ---")
    for row in rows:
        store = row.key.rsplit(" ", 1)[1]
        peer_key = f"pgbackrest async {'posix' if store == 'file' else store}"
        peer = next((r for r in rows if r.phase == row.phase and r.key == peer_key), None)
        reference = {row.phase: peer.segments / peer.seconds} if peer else {}
        print(row.line(reference))
    for line in backlogs:
        print(line)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
