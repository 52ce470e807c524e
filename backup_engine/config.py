"""Settings from a TOML file and the environment, each option declared once.

Precedence, lowest to highest: built-in default, TOML file, environment variable, command-line
flag. AWS credentials are deliberately not options: boto3 reads the standard `AWS_*` variables,
profiles and instance roles itself. PostgreSQL connection defaults likewise come from libpq's
`PG*` variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, ...), completed by `[postgres] dsn`.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backup_engine.codecs import CODEC_NAMES, Codec, get_codec
from backup_engine.errors import ConfigError
from backup_engine.storage import S3Options, Storage, open_storage
from backup_engine.urls import endpoint_url_problem, redis_url_problem, repository_url_problem

DEFAULT_CONFIG_FILE = Path("backup-engine.toml")
DAYS_MAX = 36_500  # a century: any more overflows date arithmetic, and is surely a typo
CHECK_MAX = 10_000_000
CONFIG_ENV = "BACKUP_ENGINE_CONFIG"


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


@dataclass(frozen=True)
class RepositorySettings:
    url: str | None
    endpoint_url: str | None
    region: str | None
    sse: str | None
    kms_key_id: str | None
    part_size_mb: int
    encryption: str | None
    encryption_key_file: str | None
    noncurrent_days: int
    upload_concurrency: int

    def s3_options(self) -> S3Options:
        return S3Options(
            endpoint_url=self.endpoint_url,
            region=self.region,
            sse=self.sse,
            kms_key_id=self.kms_key_id,
            part_size=self.part_size_mb * 1024 * 1024,
            max_concurrency=self.upload_concurrency,
        )


@dataclass(frozen=True)
class CompressionSettings:
    codec: str
    level: int
    threads: int

    def get(self) -> Codec:
        return get_codec(self.codec, level=self.level, threads=self.threads)


@dataclass(frozen=True)
class PostgresSettings:
    dsn: str
    bindir: str | None


@dataclass(frozen=True)
class RedisSettings:
    url: str | None


@dataclass(frozen=True)
class MediaSettings:
    paths: tuple[str, ...]


@dataclass(frozen=True)
class RetentionSettings:
    daily_days: int
    weekly_days: int
    weekly_day: str
    wal_days: int
    redis_days: int
    media_days: int


@dataclass(frozen=True)
class CheckSettings:
    warn_age_hours: int
    critical_age_hours: int
    wal_warn_seconds: int
    wal_timeout_seconds: int


@dataclass(frozen=True)
class Settings:
    repository: RepositorySettings
    compression: CompressionSettings
    postgres: PostgresSettings
    redis: RedisSettings
    media: MediaSettings
    retention: RetentionSettings
    check: CheckSettings
    source: Path | None = None
    environment: Mapping[str, str] = field(default_factory=dict, repr=False)

    def open_storage(self) -> Storage:
        if not self.repository.url:
            raise ConfigError(
                "no repository configured",
                hint="set [repository] url in backup-engine.toml, BACKUP_ENGINE_REPOSITORY "
                "or --repo (s3://bucket/prefix or file:///path)",
            )
        storage = open_storage(self.repository.url, self.repository.s3_options())
        if self.repository.encryption is None:
            return storage
        from backup_engine.storage.encrypted import KEY_ENV, EncryptedStorage, load_key

        key, env = load_key(self.environment.get(KEY_ENV), self.repository.encryption_key_file)
        return EncryptedStorage(storage, key, env)


def _coerce(option: Option, value: Any, origin: str) -> Any:
    where = f"{option.section}.{option.name} ({origin})"
    if option.kind is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be an integer, not {value!r}")
        try:
            value = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be an integer, not {value!r}") from None
        if option.minimum is not None and value < option.minimum:
            raise ConfigError(f"{where} must be at least {option.minimum}", hint=option.help)
        if option.maximum is not None and value > option.maximum:
            raise ConfigError(f"{where} must be at most {option.maximum}", hint=option.help)
    elif option.kind is tuple:
        if isinstance(value, str):  # from the environment: comma-separated
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where} must be a list of strings, not {value!r}")
        return tuple(value)
    elif not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, not {value!r}")
    if value == "" and option.default is None:
        return None
    if option.choices and value not in option.choices:
        raise ConfigError(f"{where} is {value!r}", hint=f"use one of: {', '.join(option.choices)}")
    problem = option.problem(value) if option.problem and isinstance(value, str) else None
    if problem is not None:  # the value is not repeated: it may hold a password
        raise ConfigError(f"{where} is not usable: {problem}", hint=option.help)
    return value


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"config file {path} is not UTF-8 text", hint="TOML files are UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None


def _check_known(data: Mapping[str, Any], path: Path) -> None:
    sections = {o.section for o in OPTIONS}
    for section, body in data.items():
        if section not in sections:
            raise ConfigError(
                f"unknown section [{section}] in {path}",
                hint=f"known sections: {', '.join(sorted(sections))}",
            )
        if not isinstance(body, dict):
            raise ConfigError(f"[{section}] in {path} must be a table")
        known = {o.name for o in OPTIONS if o.section == section}
        for name in body:
            if name not in known:
                raise ConfigError(
                    f"unknown option {section}.{name} in {path}",
                    hint=f"known options: {', '.join(sorted(known))}",
                )


def load_settings(
    config_file: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build settings. `overrides` maps "section.name" to command-line values (None = unset)."""
    env = os.environ if env is None else env
    explicit = config_file is not None or CONFIG_ENV in env
    path = config_file or Path(env.get(CONFIG_ENV, DEFAULT_CONFIG_FILE))
    data: dict[str, Any] = {}
    if path.exists() or explicit:
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        data = _read_toml(path)
        _check_known(data, path)
    values: dict[str, dict[str, Any]] = {}
    for option in OPTIONS:
        value = option.default
        if option.name in data.get(option.section, {}):
            value = _coerce(option, data[option.section][option.name], str(path))
        for var in option.env:
            if env.get(var):
                value = _coerce(option, env[var], f"${var}")
                break
        key = f"{option.section}.{option.name}"
        if overrides and overrides.get(key) is not None:
            value = _coerce(option, overrides[key], "command line")
        values.setdefault(option.section, {})[option.name] = value
    return Settings(
        repository=RepositorySettings(**values["repository"]),
        compression=CompressionSettings(**values["compression"]),
        postgres=PostgresSettings(**values["postgres"]),
        redis=RedisSettings(**values["redis"]),
        media=MediaSettings(**values["media"]),
        retention=RetentionSettings(**values["retention"]),
        check=CheckSettings(**values["check"]),
        environment=env,
        source=path if data else None,
    )
