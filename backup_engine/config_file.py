"""Reading a TOML configuration file: one clear line for a file that is not TOML, not UTF-8
or not readable, and for a section or option that does not exist (a typo must not be ignored).
Stanzas (`[stanza.NAME]`) and the second repository (`[repository.2]`) are checked by their
own modules."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from backup_engine import stanzas
from backup_engine.errors import ConfigError
from backup_engine.options import OPTIONS


def read_toml(path: Path) -> dict[str, Any]:
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


def check_known(data: Mapping[str, Any], path: Path) -> None:
    sections = {o.section for o in OPTIONS}
    for section, body in data.items():
        if section == stanzas.SECTION:
            continue  # stanzas.read_stanzas checks them
        if section not in sections:
            raise ConfigError(
                f"unknown section [{section}] in {path}",
                hint=f"known sections: {', '.join(sorted(sections))}",
            )
        if not isinstance(body, dict):
            raise ConfigError(f"[{section}] in {path} must be a table")
        known = {o.name for o in OPTIONS if o.section == section}
        for name in body:
            if section in ("repository", "retention") and isinstance(body[name], dict):
                continue  # [repository.2], [retention.2]: repositories.py checks them
            if name not in known:
                raise ConfigError(
                    f"unknown option {section}.{name} in {path}",
                    hint=f"known options: {', '.join(sorted(known))}",
                )
