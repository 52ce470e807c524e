"""Settings from a TOML file and the environment, each option declared once.

Precedence, lowest to highest: built-in default, TOML file, environment variable, command-line
flag. AWS credentials are deliberately not options: botocore reads the standard `AWS_*` variables,
profiles and instance roles itself. PostgreSQL connection defaults likewise come from libpq's
`PG*` variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, ...), completed by `[postgres] dsn`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backup_engine import repositories, stanzas
from backup_engine.codecs import Codec, get_codec
from backup_engine.config_file import check_known, read_toml
from backup_engine.errors import ConfigError
from backup_engine.options import OPTIONS, Option

if TYPE_CHECKING:  # the storage (botocore) is imported when a store is opened, not to read settings
    from backup_engine.postgres.basebackup import BaseBackupOptions
    from backup_engine.retention import RetentionPolicy
    from backup_engine.storage import S3Options, Storage
    from backup_engine.storage.object_lock import ObjectLock

DEFAULT_CONFIG_FILE = Path("backup-engine.toml")
CONFIG_ENV = "BACKUP_ENGINE_CONFIG"


@dataclass(frozen=True)
class RepositorySettings:
    url: str | None
    endpoint_url: str | None
    ca_bundle: str | None
    region: str | None
    sse: str | None
    kms_key_id: str | None
    part_size_mb: int
    encryption: str | None
    encryption_key_file: str | None
    noncurrent_days: int
    upload_concurrency: int
    object_lock: str | None = None
    profile: str | None = None
    acknowledge: str = "all"  # of the first only: the rule for writing to several

    def s3_options(self, lock: ObjectLock | None = None) -> S3Options:
        from backup_engine.storage import S3Options

        return S3Options(
            lock=lock,
            endpoint_url=self.endpoint_url,
            ca_bundle=self.ca_bundle,
            region=self.region,
            sse=self.sse,
            kms_key_id=self.kms_key_id,
            part_size=self.part_size_mb * 1024 * 1024,
            max_concurrency=self.upload_concurrency,
            profile=self.profile,
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
    backup_type: str = "full"
    full_on: str = "sunday"
    staging_dir: str | None = None
    compress: str = "server"
    server_workers: int = 2
    checkpoint: str = "fast"
    max_rate_kb: int = 0

    def backup_options(self, **given: Any) -> BaseBackupOptions:
        """What `pg backup` and `run-all` take a base backup with; `given` overrides."""
        from backup_engine.postgres.basebackup import BaseBackupOptions

        values: dict[str, Any] = dict(
            dsn=self.dsn, bindir=self.bindir, backup_type=self.backup_type, full_on=self.full_on,
            compress=self.compress, server_workers=self.server_workers,
            checkpoint=self.checkpoint, max_rate_kb=self.max_rate_kb,
        )  # fmt: skip
        return BaseBackupOptions(**{**values, **given})


@dataclass(frozen=True)
class RedisSettings:
    url: str | None


@dataclass(frozen=True)
class MediaSettings:
    paths: tuple[str, ...]
    concurrency: int = 4


@dataclass(frozen=True)
class RetentionSettings:
    daily_days: int
    weekly_days: int
    weekly_day: str
    wal_days: int
    redis_days: int
    media_days: int
    full_keep: int = 0

    def policy(self) -> RetentionPolicy:
        from backup_engine.retention import RetentionPolicy

        return RetentionPolicy(self.daily_days, self.weekly_days, self.weekly_day,
                               self.wal_days, self.redis_days, self.media_days,
                               self.full_keep)  # fmt: skip


@dataclass(frozen=True)
class WalSettings:
    push_mode: str
    push_concurrency: int
    queue_max_mb: int
    fetch_ahead: int
    fetch_concurrency: int


@dataclass(frozen=True)
class CheckSettings:
    warn_age_hours: int
    critical_age_hours: int
    wal_warn_seconds: int
    wal_timeout_seconds: int


@dataclass(frozen=True)
class DrillSettings:
    report_root: str
    keep_days: int


@dataclass(frozen=True)
class Settings:
    repository: RepositorySettings
    compression: CompressionSettings
    postgres: PostgresSettings
    redis: RedisSettings
    media: MediaSettings
    retention: RetentionSettings
    check: CheckSettings
    wal: WalSettings
    drill: DrillSettings
    source: Path | None = None
    environment: Mapping[str, str] = field(default_factory=dict, repr=False)
    origins: Mapping[str, str] = field(default_factory=dict)  # "section.name" -> where from
    stanza: str | None = None  # the cluster selected (stanzas.py); its repository is below url
    stanzas: tuple[str, ...] = ()  # every stanza the configuration names
    repositories: tuple[RepositorySettings, ...] = ()  # [repository], then [repository.2]
    retentions: tuple[RetentionSettings, ...] = ()  # each repository's ([retention.2])
    selected: int | None = None  # --repo N: that repository alone, for reads and writes

    @property
    def needs_stanza(self) -> bool:
        """Stanzas are configured, none is selected, and the repository is the root's (a
        `--repo` naming one stanza's repository, as a restore_command does, needs none)."""
        explicit = self.origins.get("repository.url") == "command line"
        return bool(self.stanzas) and self.stanza is None and not explicit

    def require_stanza(self) -> None:
        if self.needs_stanza:
            raise ConfigError(
                f"the configuration names {len(self.stanzas)} stanzas "
                f"({', '.join(self.stanzas)}): say which cluster",
                hint="pass --stanza NAME (or set $BACKUP_ENGINE_STANZA)",
            )

    def each_repository(self) -> list[Settings]:
        """These settings once per repository a command that keeps each one (expire) runs on:
        each with its own url and retention ([retention.2]); one when --repo N selected."""
        if self.selected is not None or len(self.repositories) < 2:
            return [self]
        return [
            replace(self, repository=repository, retention=retention, selected=number)
            for number, (repository, retention)
            in enumerate(zip(self.repositories, self.retentions, strict=True), 1)
        ]  # fmt: skip

    def open_storage(self) -> Storage:
        """The repository read from (and written to when it is the only one): the first,
        or the one --repo N selected."""
        return self._open(self.repository)

    def open_storages(self) -> list[Storage]:
        """Every repository a backup or a WAL segment goes to (one when --repo N)."""
        if self.selected is not None or len(self.repositories) < 2:
            return [self.open_storage()]
        return [self._open(repository) for repository in self.repositories]

    def open_repository(self, number: int) -> Storage:
        """Repository `number` (1: [repository], 2: [repository.2])."""
        if not 1 <= number <= len(self.repositories):
            raise ConfigError(
                f"no repository {number} is configured",
                hint="add [repository.2] with its url to the config file",
            )
        return self._open(self.repositories[number - 1])

    def open_write_storage(self) -> Storage:
        """Where one backup stream goes: every repository at once (repositories.py)."""
        stores = self.open_storages()
        if len(stores) == 1:
            return stores[0]
        from backup_engine.storage.mirror import MirroredStorage

        return MirroredStorage(stores, acknowledge=self.repository.acknowledge)

    def _open(self, repository: RepositorySettings) -> Storage:
        if not repository.url:
            raise ConfigError(
                "no repository configured",
                hint="set [repository] url in backup-engine.toml, BACKUP_ENGINE_REPOSITORY "
                "or --repo (s3://bucket/prefix or file:///path)",
            )
        from backup_engine.storage import open_storage

        lock = self.object_lock(repository)  # as long as that repository's own plan
        if lock is not None and not repository.url.startswith("s3://"):
            raise ConfigError(
                "[repository] object_lock is set, but Object Lock is a feature of S3 buckets",
                hint="unset object_lock for a file:// repository",
            )
        if self.stanza is not None:
            stanzas.prepare_local(repository.url, self.stanza)
        storage = open_storage(repository.url, repository.s3_options(lock))
        if repository.encryption is None:
            return storage
        from backup_engine.storage.encrypted import KEY_ENV, EncryptedStorage, load_key

        key, env = load_key(self.environment.get(KEY_ENV), repository.encryption_key_file)
        return EncryptedStorage(storage, key, env)

    def object_lock(self, repository: RepositorySettings | None = None) -> ObjectLock | None:
        """The retention every object gets, covering the retention plan; None when off."""
        repository = repository or self.repository
        if repository.object_lock is None:
            return None
        from backup_engine.storage.object_lock import plan_lock

        number = self.repositories.index(repository) if repository in self.repositories else 0
        retention = self.retentions[number] if number < len(self.retentions) else self.retention
        policy = retention.policy()
        evidence = self.drill.keep_days  # 0 keeps every run: lock it as long as the backups
        longest = max(policy.daily_days, policy.weekly_days)
        return plan_lock(repository.object_lock, policy, evidence or longest)


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
        raise ConfigError(
            f"{where} is {value!r}",
            hint=f"use one of: {option.choices_text}",
        )
    problem = option.problem(value) if option.problem and isinstance(value, str) else None
    if problem is not None:  # the value is not repeated: it may hold a password
        raise ConfigError(f"{where} is not usable: {problem}", hint=option.help)
    return value


def _present(path: Path) -> bool:
    """Whether something is at `path`; one in a directory this user may not enter counts as
    there (reading it then says so), never as a traceback."""
    try:
        return path.exists()
    except PermissionError:
        return True


def load_settings(
    config_file: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    stanza: str | None = None,
) -> Settings:
    """Build settings. `overrides` maps "section.name" to command-line values (None = unset);
    `stanza` (or $BACKUP_ENGINE_STANZA) selects one of the config's clusters (stanzas.py)."""
    env = os.environ if env is None else env
    explicit = config_file is not None or CONFIG_ENV in env
    path = config_file or Path(env.get(CONFIG_ENV, DEFAULT_CONFIG_FILE))
    data: dict[str, Any] = {}
    if explicit or _present(path):
        if not _present(path):
            raise ConfigError(f"config file {path} does not exist")
        data = read_toml(path)  # one that cannot be read is named there
        check_known(data, path)
    postgres_options = {o.name: o for o in OPTIONS if o.section == "postgres"}
    tables = stanzas.read_stanzas(data, path, set(postgres_options))
    for name, table in tables.items():  # every stanza's values, not only the one selected
        for key, value in table.items():
            _coerce(postgres_options[key], value, f"{path} [stanza.{name}]")
    second = repositories.extra_tables(data, path, {o.name for o in OPTIONS
                                                    if o.section == "repository"})  # fmt: skip
    overrides = dict(overrides or {})
    selected = repositories.parse_selection(overrides.get("repository.url"))
    if selected is not None:
        overrides["repository.url"] = None  # --repo 2: a number, not a url
    chosen, chosen_from = stanzas.select(tables, stanza, env)
    own = tables.get(chosen, {}) if chosen else {}
    values: dict[str, dict[str, Any]] = {}
    origins: dict[str, str] = {}
    for option in OPTIONS:
        key = f"{option.section}.{option.name}"
        value, origins[key] = option.default, "default"
        if option.name in data.get(option.section, {}):
            value = _coerce(option, data[option.section][option.name], str(path))
            origins[key] = str(path)
        if option.section == "postgres" and option.name in own:
            where = f"{path} [stanza.{chosen}]"
            value, origins[key] = _coerce(option, own[option.name], where), where
        for var in option.variables:
            if env.get(var):
                value, origins[key] = _coerce(option, env[var], f"${var}"), f"${var}"
                break
        if overrides and overrides.get(key) is not None:
            value, origins[key] = _coerce(option, overrides[key], "command line"), "command line"
        values.setdefault(option.section, {})[option.name] = value
    stores = [values["repository"]]
    explicit = origins["repository.url"] == "command line"  # --repo URL: that store alone
    if (second or env.get(repositories.env_of("url"))) and not explicit:
        stores.append(repositories.second_values(second, env, path, OPTIONS, _coerce))
        repositories.check_distinct(stores[0]["url"], stores[1]["url"])
    if chosen is not None:  # one cluster: its own prefix; Redis and media are the root's
        for store in stores:
            if store["url"]:
                store["url"] = stanzas.stanza_url(store["url"], chosen)
        values["redis"]["url"], values["media"]["paths"] = None, ()
        origins["stanza"] = chosen_from
    configured = tuple(RepositorySettings(**store) for store in stores)
    retentions: tuple[RetentionSettings, ...] = (RetentionSettings(**values["retention"]),)
    if len(configured) > 1:
        retentions += (RetentionSettings(**repositories.second_retention(
            data, path, values["retention"], OPTIONS, _coerce)),)  # fmt: skip
    elif isinstance(data.get("retention", {}).get(repositories.SECOND), dict):
        raise ConfigError(f"[retention.2] in {path} is set, but there is no [repository.2]")
    if selected is not None and selected > len(configured):
        raise ConfigError(
            f"--repo {selected}: no repository {selected} is configured",
            hint="add [repository.2] with its url to the config file",
        )
    return Settings(
        repository=configured[(selected or 1) - 1],
        repositories=configured,
        selected=selected,
        compression=CompressionSettings(**values["compression"]),
        postgres=PostgresSettings(**values["postgres"]),
        redis=RedisSettings(**values["redis"]),
        media=MediaSettings(**values["media"]),
        retention=retentions[(selected or 1) - 1],
        retentions=retentions,
        check=CheckSettings(**values["check"]),
        wal=WalSettings(**values["wal"]),
        drill=DrillSettings(**values["drill"]),
        environment=env,
        source=path if data else None,
        origins=origins,
        stanza=chosen,
        stanzas=tuple(sorted(tables)),
    )
