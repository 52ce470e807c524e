"""A second repository (3-2-1: two copies off the host, one in another place or provider):
pgBackRest's repo2, Barman's cloud beside local.

```toml
[repository]
url = "s3://backups-eu/prod"
acknowledge = "all"          # or "any"

[repository.2]               # any [repository] option: its own url, endpoint, keys, encryption
url = "s3://backups-us/prod"
region = "us-east-1"
profile = "offsite"          # its own credentials (an AWS profile)
```

Written to both: WAL (`pg wal-push` stores each segment in each repository; with `acknowledge =
"all"` it succeeds only when every one holds it, so PostgreSQL retries until they do; with
"any", one is enough and the other is named in a warning), base backups and Redis snapshots (one
stream, written to both at once: `storage/mirror.py`), media snapshots (each repository
deduplicates against its own packs). Read from the first unless `--repo 2` names the second
(restore, list, verify, expire with that repository's objects). `storage copy --from 1 --to 2`
fills a new or lagging repository from the other. A second repository must be another store:
the same url, or one inside the other, is refused here; `check` also writes a probe into one
and looks for it in the other (two URLs of one bucket).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from backup_engine.errors import BackupEngineError, ConfigError

if TYPE_CHECKING:
    from backup_engine.options import Option
    from backup_engine.storage import Storage

_T = TypeVar("_T")

SECOND = "2"  # the one extra repository supported: [repository.2]


def extra_tables(data: Mapping[str, Any], path: Path, known: set[str]) -> dict[str, Any]:
    """The `[repository.2]` table of a config file (removed from `data`'s view of
    [repository] by the caller), its keys among the [repository] options."""
    body = data.get("repository", {})
    tables = (
        {k: v for k, v in body.items() if isinstance(v, dict)} if isinstance(body, dict) else {}
    )
    for number, table in tables.items():
        if number != SECOND:
            raise ConfigError(
                f"[repository.{number}] in {path}: only a second repository is supported",
                hint="name it [repository.2]",
            )
        for key in table:
            if key not in known or key == "acknowledge":
                raise ConfigError(
                    f"unknown option repository.{number}.{key} in {path}",
                    hint=f"a repository takes: {', '.join(sorted(known - {'acknowledge'}))}",
                )
        if not table.get("url"):
            raise ConfigError(f"[repository.{number}] in {path} has no url")
    return tables.get(SECOND, {})


def env_of(name: str) -> str:
    """The variable that sets option `name` of the second repository."""
    return f"BACKUP_ENGINE_REPOSITORY{SECOND}_{name.upper()}"


def _norm(url: str) -> str:
    return url.rstrip("/") + "/"


def check_distinct(first: str | None, second: str) -> None:
    """Refuse a second repository that is the first, or inside it, or around it: a listing of
    one would hold the other's objects, and an expire of one would delete the other's."""
    if first is None:
        raise ConfigError(
            "[repository.2] is set but [repository] url is not",
            hint="the second repository is a copy of the first: set [repository] url",
        )
    a, b = _norm(first), _norm(second)
    if a == b:
        raise ConfigError("[repository.2] url is the same repository as [repository] url")
    if a.startswith(b) or b.startswith(a):
        raise ConfigError(
            "[repository.2] url and [repository] url are one inside the other",
            hint="give each repository a prefix of its own, neither under the other",
        )


def parse_selection(value: str | None) -> int | None:
    """`--repo 2` names the second configured repository (a URL names one directly)."""
    if value is not None and value.isdigit():
        number = int(value)
        if number not in (1, 2):
            raise ConfigError(f"--repo {value}: repositories are numbered 1 and 2")
        return number
    return None


def second_values(
    table: Mapping[str, Any],
    env: Mapping[str, str],
    path: Path,
    options: Sequence[Option],
    coerce: Callable[[Option, Any, str], Any],
) -> dict[str, Any]:
    """[repository.2]'s values: each option's default, the table, then its own variable
    (BACKUP_ENGINE_REPOSITORY2_<NAME>); nothing is inherited from [repository]."""
    values: dict[str, Any] = {}
    for option in options:
        if option.section != "repository":
            continue
        value = option.default
        if option.name in table:
            value = coerce(option, table[option.name], f"{path} [repository.{SECOND}]")
        variable = env_of(option.name)
        if env.get(variable):
            value = coerce(option, env[variable], f"${variable}")
        values[option.name] = value
    return values


def for_each(
    stores: Sequence[Storage], acknowledge: str, what: str, action: Callable[[Storage], _T]
) -> list[tuple[int, _T]]:
    """(number, result) of `action` on each repository in turn (a WAL segment, a media
    snapshot: each repository checks what it already holds). "all": the first failure is
    raised; "any": a failure is a warning naming the repository, and only all of them failing
    is an error."""
    from backup_engine.storage.mirror import warn_failed

    done: list[tuple[int, _T]] = []
    failure: BackupEngineError | None = None
    for number, store in enumerate(stores, 1):
        try:
            done.append((number, action(store)))
        except BackupEngineError as exc:
            if acknowledge == "all" or len(stores) == 1:
                raise
            failure = exc
            warn_failed(number, store.url, what, exc)
    if not done and failure is not None:
        raise failure
    return done


def second_retention(
    data: Mapping[str, Any],
    path: Path,
    base: Mapping[str, Any],
    options: Sequence[Option],
    coerce: Callable[[Option, Any, str], Any],
) -> dict[str, Any]:
    """The retention of the second repository: [retention] (`base`, resolved) with what
    `[retention.2]` changes (a longer history offsite, say). Without a second repository the
    table is refused: it would apply to nothing."""
    body = data.get("retention", {})
    table = body.get(SECOND, {}) if isinstance(body, dict) else {}
    extra = [k for k, v in body.items() if isinstance(v, dict) and k != SECOND] if isinstance(
        body, dict) else []  # fmt: skip
    if extra:
        raise ConfigError(f"[retention.{extra[0]}] in {path}: only [retention.2] is supported")
    known = {o.name: o for o in options if o.section == "retention"}
    values = dict(base)
    for key, value in table.items():
        if key not in known:
            raise ConfigError(
                f"unknown option retention.{SECOND}.{key} in {path}",
                hint=f"known options: {', '.join(sorted(known))}",
            )
        values[key] = coerce(known[key], value, f"{path} [retention.{SECOND}]")
    return values
