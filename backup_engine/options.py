"""Every configuration option, declared once: section, name, type, default, environment
variables, allowed values or range, and the check a value must pass. `config.py` turns them into
typed settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backup_engine.codecs import CODEC_NAMES
from backup_engine.urls import endpoint_url_problem, redis_url_problem, repository_url_problem

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


OPTIONS: tuple[Option, ...] = (
    Option(
        "repository",
        "url",
        str,
        None,
        ("BACKUP_ENGINE_REPOSITORY",),
        help="s3://bucket/prefix or file:///path",
        problem=repository_url_problem,
    ),
    Option(
        "repository",
        "endpoint_url",
        str,
        None,
        ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
        help="S3-compatible endpoint (MinIO, Ceph...); empty for AWS",
        problem=endpoint_url_problem,
    ),
    Option("repository", "region", str, None, ("AWS_REGION", "AWS_DEFAULT_REGION")),
    Option(
        "repository",
        "sse",
        str,
        None,
        ("BACKUP_ENGINE_SSE",),
        ("AES256", "aws:kms"),
        help="server-side encryption requested on every object",
    ),
    Option("repository", "kms_key_id", str, None, ("BACKUP_ENGINE_KMS_KEY_ID",)),
    Option(
        "repository",
        "part_size_mb",
        int,
        8,
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
    ),
    Option(
        "repository",
        "encryption_key_file",
        str,
        None,
        ("BACKUP_ENGINE_ENCRYPTION_KEY_FILE",),
        help="32-byte key (raw, base64 or hex); or set BACKUP_ENGINE_ENCRYPTION_KEY",
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
        4,
        help="parts uploaded/downloaded at once",
        minimum=1,
    ),
    Option("compression", "codec", str, "zstd", ("BACKUP_ENGINE_COMPRESSION",), CODEC_NAMES),
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
        help="libpq connection string of the server to back up",
    ),
    Option(
        "redis",
        "url",
        str,
        None,
        ("BACKUP_ENGINE_REDIS_URL", "REDIS_URL"),
        help="the server to back up: redis://host:port (a password as :PASSWORD@ before the "
        "host; rediss:// for TLS)",
        problem=redis_url_problem,
    ),
    Option(
        "postgres",
        "bindir",
        str,
        None,
        ("BACKUP_ENGINE_PG_BINDIR",),
        help="directory holding pg_basebackup & co; found automatically when empty",
    ),
    Option(
        "media",
        "paths",
        tuple,
        (),
        ("BACKUP_ENGINE_MEDIA_PATHS",),
        help="directories `run-all` snapshots (comma-separated in the environment)",
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
        choices=("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"),
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
)
