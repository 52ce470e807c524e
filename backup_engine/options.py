"""Every configuration option, declared once: section, name, type, default, environment
variables, allowed values or range, and the check a value must pass. `config.py` turns them into
typed settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backup_engine.codecs import CODEC_NAMES
from backup_engine.retention import WEEKDAYS
from backup_engine.urls import (
    endpoint_url_problem,
    redis_url_problem,
    repository_url_problem,
)

DAYS_MAX = 36_500  # a century: any more overflows date arithmetic, and is surely a typo
CHECK_MAX = 10_000_000


@dataclass(frozen=True)
class Option:
    section: str
    name: str
    kind: type
    default: Any
    env: tuple[str, ...] = ()
    choices: tuple[str, ...] | None = None
    help: str = ""
    minimum: int | None = None  # for integers
    maximum: int | None = None
    problem: Callable[[str], str | None] | None = None  # why a string value is unusable
    example: Any = None  # what backup-engine.example.toml shows (commented out unless `active`)
    active: bool = False  # the example file sets it (instead of showing it commented out)

    @property
    def choices_text(self) -> str:
        return ", ".join(c or '""' for c in self.choices or ())

    @property
    def variables(self) -> tuple[str, ...]:
        """The environment variables that set it: BACKUP_ENGINE_<SECTION>_<NAME> for every
        option (one prefix), after the names users know (AWS_REGION, BACKUP_ENGINE_PG_DSN)."""
        derived = f"BACKUP_ENGINE_{self.section}_{self.name}".upper()
        return self.env if derived in self.env else (*self.env, derived)


OPTIONS: tuple[Option, ...] = (
    Option(
        "repository",
        "url",
        str,
        None,
        ("BACKUP_ENGINE_REPOSITORY",),
        help="s3://bucket/prefix or file:///path",
        problem=repository_url_problem,
        example="s3://my-company-backups/prod",
        active=True,
    ),
    Option(
        "repository",
        "endpoint_url",
        str,
        None,
        ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
        help="S3-compatible endpoint (MinIO, Ceph...); empty for AWS",
        problem=endpoint_url_problem,
        example="http://minio.internal:9000",
    ),
    Option(
        "repository",
        "ca_bundle",
        str,
        None,
        ("AWS_CA_BUNDLE",),
        help="PEM file of the CA that signed the S3 endpoint's certificate (a private CA)",
        example="/etc/ssl/certs/internal-ca.pem",
    ),
    Option(
        "repository",
        "region",
        str,
        None,
        ("AWS_REGION", "AWS_DEFAULT_REGION"),
        help="S3 region",
        example="eu-west-1",
    ),
    Option(
        "repository",
        "sse",
        str,
        None,
        ("BACKUP_ENGINE_SSE",),
        ("AES256", "aws:kms"),
        help="server-side encryption requested on every object",
        example="AES256",
        active=True,
    ),
    Option(
        "repository",
        "kms_key_id",
        str,
        None,
        ("BACKUP_ENGINE_KMS_KEY_ID",),
        help="KMS key for sse = aws:kms",
        example="arn:aws:kms:...",
    ),
    Option(
        "repository",
        "part_size_mb",
        int,
        5,
        help="first multipart part size (S3's minimum is 5); grows",
        minimum=5,
    ),
    Option(
        "repository",
        "encryption",
        str,
        None,
        ("BACKUP_ENGINE_ENCRYPTION",),
        ("aes-256-gcm",),
        help="client-side encryption: the store only ever sees ciphertext",
        example="aes-256-gcm",
    ),
    Option(
        "repository",
        "encryption_key_file",
        str,
        None,
        ("BACKUP_ENGINE_ENCRYPTION_KEY_FILE",),
        help="32-byte key (raw, base64 or hex); or set BACKUP_ENGINE_ENCRYPTION_KEY",
        example="/etc/backup-engine.key",
    ),
    Option(
        "repository",
        "noncurrent_days",
        int,
        30,
        help="storage init: how long overwritten or deleted object versions survive",
        minimum=1,
    ),
    Option(
        "repository",
        "upload_concurrency",
        int,
        2,
        help="parts uploaded at once; a backup holds part_size x (this + 1) in memory",
        minimum=1,
    ),
    Option(
        "repository",
        "object_lock",
        str,
        None,
        ("BACKUP_ENGINE_OBJECT_LOCK",),
        ("governance", "compliance"),
        help="S3 Object Lock retention on every object written, as long as the plan keeps it",
        example="governance",
    ),
    Option(
        "repository",
        "profile",
        str,
        None,
        help="AWS profile (~/.aws/credentials) this repository's requests sign with; empty: "
        "AWS_* variables, the default profile or the instance role",
        example="offsite",
    ),
    Option(
        "repository",
        "acknowledge",
        str,
        "all",
        choices=("all", "any"),
        help="with [repository.2]: a WAL segment or backup is done when every repository "
        "holds it (all), or at least one (any: the others are reported and filled by copy)",
    ),
    Option(
        "compression",
        "codec",
        str,
        "zstd",
        ("BACKUP_ENGINE_COMPRESSION",),
        CODEC_NAMES,
        help="compression of everything stored",
    ),
    # Level 1 with a worker per core keeps up with pg_basebackup; level 3 costs ~2x the CPU time
    # for ~4% smaller backups (benchmarks/backup_throughput.py).
    Option(
        "compression",
        "level",
        int,
        1,
        help="zstd level, -7 (fastest) to 22",
        minimum=-7,
        maximum=22,
    ),
    Option("compression", "threads", int, -1, help="zstd worker threads; 0 = inline, -1 = cores"),
    Option(
        "postgres",
        "dsn",
        str,
        "",
        ("BACKUP_ENGINE_PG_DSN",),
        help="libpq connection string of the server to back up (PG* fill the rest)",
        example="host=localhost user=backup_user dbname=postgres",
        active=True,
    ),
    Option(
        "redis",
        "url",
        str,
        None,
        ("BACKUP_ENGINE_REDIS_URL", "REDIS_URL"),
        help="the server to back up: redis://host:port (a password as :PASSWORD@ before the "
        "host; rediss:// for TLS)",
        example="redis://localhost:6379/0",
        problem=redis_url_problem,
    ),
    Option(
        "postgres",
        "bindir",
        str,
        None,
        ("BACKUP_ENGINE_PG_BINDIR",),
        help="directory holding pg_basebackup & co; found automatically when empty",
        example="/usr/lib/postgresql/15/bin",
    ),
    Option(
        "postgres",
        "backup_type",
        str,
        "full",
        choices=("full", "incr"),
        help="what pg backup takes; incr (PostgreSQL 17+, summarize_wal = on) stores only "
        "what changed since the previous backup",
    ),
    Option(
        "postgres",
        "full_on",
        str,
        "sunday",
        choices=("", *WEEKDAYS),
        help="with backup_type incr: the weekday (UTC) whose backup is full, so a chain is at "
        "most a week long; empty: never",
    ),
    # Server: zstd runs on the database host, the network and this process carry compressed
    # bytes, and a 3 GB backup takes less time than reading it uncompressed (README). Client:
    # when the database host has no CPU to spare. Both need [compression] codec = "zstd".
    Option(
        "postgres",
        "compress",
        str,
        "server",
        choices=("server", "client"),
        help="where base backups are compressed: server (PostgreSQL 15+, zstd on the database "
        "host, at [compression] level) or client (here)",
    ),
    Option(
        "postgres",
        "server_workers",
        int,
        2,
        help="with compress = server: zstd threads the server may use (0: its backend alone)",
        minimum=0,
        maximum=64,
    ),
    Option(
        "postgres",
        "checkpoint",
        str,
        "fast",
        choices=("fast", "spread"),
        help="the checkpoint a base backup starts with: fast (now) or spread (PostgreSQL's "
        "checkpoint_completion_target pace: no I/O burst, but the start waits minutes)",
    ),
    Option(
        "postgres",
        "max_rate_kb",
        int,
        0,
        help="base backup transfer limit in kB/s (32 to 1048576); 0: no limit",
        minimum=0,
        maximum=1_048_576,
    ),
    Option(
        "postgres",
        "staging_dir",
        str,
        None,
        help="where restoring an incremental backup unpacks its chain for pg_combinebackup "
        "(needs the chain's size free) [default: beside the target]",
    ),
    Option(
        "media",
        "paths",
        tuple,
        (),
        ("BACKUP_ENGINE_MEDIA_PATHS",),
        help="directories `media backup` and `run-all` snapshot (comma-separated in the "
        "environment)",
        example=["/data/uploads"],
    ),
    Option(
        "media",
        "concurrency",
        int,
        4,
        ("BACKUP_ENGINE_MEDIA_CONCURRENCY",),
        help="packs uploaded, and fetched by restore and verify, in parallel",
        minimum=1,
        maximum=64,
    ),
    # The plan's retention table. Days are counted back from now; see retention.py.
    Option(
        "retention",
        "daily_days",
        int,
        30,
        help="keep every base backup this long",
        minimum=1,
        maximum=DAYS_MAX,
    ),
    Option(
        "retention",
        "weekly_days",
        int,
        90,
        help="keep the weekly backup this long",
        minimum=1,
        maximum=DAYS_MAX,
    ),
    Option(
        "retention",
        "weekly_day",
        str,
        "sunday",
        choices=WEEKDAYS,
        help="the day whose backup is the weekly one",
    ),
    Option(
        "retention",
        "wal_days",
        int,
        7,
        help="point-in-time recovery window",
        minimum=1,
        maximum=DAYS_MAX,
    ),
    Option(
        "retention",
        "redis_days",
        int,
        30,
        help="keep Redis snapshots this long",
        minimum=1,
        maximum=DAYS_MAX,
    ),
    Option(
        "retention",
        "media_days",
        int,
        30,
        help="keep media snapshots this long",
        minimum=1,
        maximum=DAYS_MAX,
    ),
    Option(
        "retention",
        "full_keep",
        int,
        0,
        help="keep the newest N full base backups (and their incrementals) instead of "
        "daily_days/weekly_days; 0: by days. The PITR window stays whole either way",
        minimum=0,
        maximum=10_000,
    ),
    Option(
        "wal",
        "push_mode",
        str,
        "sync",
        ("BACKUP_ENGINE_WAL_PUSH_MODE",),
        ("sync", "async"),
        help="async: each wal-push call also pushes the next .ready segments in parallel, in a "
        "worker, and later calls answer from the spool in milliseconds (recommended)",
        example="async",
        active=True,
    ),
    Option(
        "wal",
        "push_concurrency",
        int,
        4,
        ("BACKUP_ENGINE_WAL_PUSH_CONCURRENCY",),
        help="segments the async push worker stores at once",
        minimum=1,
        maximum=64,
    ),
    Option(
        "wal",
        "queue_max_mb",
        int,
        4096,
        ("BACKUP_ENGINE_WAL_QUEUE_MAX_MB",),
        help="unarchived WAL in pg_wal above this: check answers WARNING and the async push "
        "worker's log says so (WAL is never dropped); 0 = no limit",
        minimum=0,
        maximum=CHECK_MAX,
    ),
    Option(
        "wal",
        "fetch_ahead",
        int,
        8,
        ("BACKUP_ENGINE_WAL_FETCH_AHEAD",),
        help="segments wal-fetch prefetches (verified) ahead of recovery; 0 = off",
        minimum=0,
        maximum=64,
    ),
    Option(
        "wal",
        "fetch_concurrency",
        int,
        4,
        ("BACKUP_ENGINE_WAL_FETCH_CONCURRENCY",),
        help="segments prefetched at once",
        minimum=1,
        maximum=64,
    ),
    Option(
        "check",
        "warn_age_hours",
        int,
        24,
        help="newest backup older: WARNING",
        minimum=1,
        maximum=CHECK_MAX,
    ),
    Option(
        "check",
        "critical_age_hours",
        int,
        26,
        help="newest backup older: CRITICAL",
        minimum=1,
        maximum=CHECK_MAX,
    ),
    Option(
        "check",
        "wal_warn_seconds",
        int,
        30,
        help="WAL probe slower: WARNING",
        minimum=1,
        maximum=CHECK_MAX,
    ),
    Option(
        "check",
        "wal_timeout_seconds",
        int,
        60,
        help="WAL probe slower: CRITICAL",
        minimum=1,
        maximum=CHECK_MAX,
    ),
    Option(
        "drill",
        "report_root",
        str,
        "drill-report",
        ("DRILL_REPORT_ROOT",),
        help="where each drill run's evidence directory goes (and the latest link)",
    ),
    Option(
        "drill",
        "keep_days",
        int,
        90,
        help="drill runs older are pruned from report_root; 0 keeps all",
        minimum=0,
        maximum=DAYS_MAX,
    ),
)
