"""Several PostgreSQL clusters in one configuration: pgBackRest's stanzas, Barman's servers.

```toml
[repository]
url = "s3://backups/prod"

[postgres]                 # what every stanza shares (bindir, compress, ...)
bindir = "/usr/lib/postgresql/15/bin"

[stanza.main]              # one cluster: any [postgres] option
dsn = "host=/var/run/postgresql port=5432"

[stanza.reports]
dsn = "host=/var/run/postgresql port=5433"
backup_type = "auto"
```

`--stanza NAME` (or `$BACKUP_ENGINE_STANZA`) selects one: its options go over `[postgres]`
(the environment and flags still win, as for any option), and the repository becomes
`<url>/stanzas/NAME`, so each cluster's backups, WAL, locks and evidence live under a prefix of
their own that no other stanza's command lists, expires or restores from. Redis and media stay
with the configuration's root (a stanza is a PostgreSQL cluster). `run-all` backs up every
stanza, then the root. A stanza name is a path component: letters, digits, `-` and `_` only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from backup_engine.errors import ConfigError

SECTION = "stanza"
STANZA_ENV = "BACKUP_ENGINE_STANZA"
PREFIX = "stanzas"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}\Z")


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a stanza (it becomes a path component of every key), or None."""
    if not _NAME.match(name):
        return "1 to 63 letters, digits, '-' or '_', starting with a letter or digit"
    return None


def check_name(name: str, where: str) -> str:
    problem = name_problem(name)
    if problem is not None:
        raise ConfigError(f"stanza {name!r} ({where}) is not usable: {problem}")
    return name


def read_stanzas(data: Mapping[str, Any], path: Path, known: set[str]) -> dict[str, dict[str, Any]]:
    """The `[stanza.NAME]` tables of a config file, names checked, keys among `known`."""
    body = data.get(SECTION, {})
    if not isinstance(body, dict):
        raise ConfigError(f"[{SECTION}] in {path} must hold tables: [{SECTION}.NAME]")
    tables: dict[str, dict[str, Any]] = {}
    for name, table in body.items():
        check_name(name, str(path))
        if not isinstance(table, dict):
            raise ConfigError(
                f"{SECTION}.{name} in {path} must be a table of [postgres] options",
                hint=f'write it as [{SECTION}.{name}] with dsn = "..." below',
            )
        for key in table:
            if key not in known:
                raise ConfigError(
                    f"unknown option {SECTION}.{name}.{key} in {path}",
                    hint=f"a stanza takes [postgres] options: {', '.join(sorted(known))}",
                )
        tables[name] = table
    return tables


def select(
    tables: Mapping[str, Any], given: str | None, env: Mapping[str, str]
) -> tuple[str | None, str]:
    """The stanza asked for (flag, then environment) and where from; refused when unknown."""
    name, origin = (given, "--stanza") if given else (env.get(STANZA_ENV) or None, f"${STANZA_ENV}")
    if name is None:
        return None, ""
    check_name(name, origin)
    if name not in tables:
        known = ", ".join(sorted(tables)) or "none"
        raise ConfigError(
            f"no stanza {name!r} in the configuration ({origin}); stanzas configured: {known}",
            hint=f"add [{SECTION}.{name}] with its dsn to the config file",
        )
    return name, origin


def stanza_url(url: str, name: str) -> str:
    """The repository of stanza `name` under `url` (unchanged when `url` is already it, as in
    the restore_command a restore of the stanza wrote)."""
    base = url.rstrip("/")
    suffix = f"/{PREFIX}/{name}"
    return base if base.endswith(suffix) else base + suffix


def prepare_local(url: str, name: str) -> None:
    """A file:// repository's stanza directory, made when the repository itself exists (a
    missing repository stays an error: a typo in its path must not create a new one)."""
    parsed = urlparse(url)
    suffix = f"/{PREFIX}/{name}"
    if parsed.scheme != "file" or not parsed.path.rstrip("/").endswith(suffix):
        return
    stanza = Path(unquote(parsed.path))
    root = stanza.parent.parent
    if root.is_dir() and not root.is_symlink():
        with suppress(FileExistsError):
            (root / PREFIX).mkdir(mode=0o700)
        with suppress(FileExistsError):
            stanza.mkdir(mode=0o700)
