"""The settings a restored data directory needs to recover from the WAL archive, and the
commands PostgreSQL runs to archive and fetch WAL through this tool."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

RECOVERY_SIGNAL = "recovery.signal"
AUTO_CONF = "postgresql.auto.conf"


def tool_argv() -> list[str]:
    """How to run this very tool: the interpreter running now, with the package it imports."""
    return [sys.executable, "-m", "backup_engine"]


def tool_command(
    subcommand: Sequence[str], *, repo_url: str, config_file: Path | None = None
) -> str:
    """A shell command line for archive_command / restore_command (PostgreSQL runs it via sh).

    `%f` and `%p` stay unquoted: PostgreSQL substitutes them with plain file names and paths.
    """
    words = [*tool_argv(), "--repo", repo_url]
    if config_file is not None:
        words += ["--config", str(config_file.absolute())]
    words += list(subcommand)
    return " ".join(w if w in ("%f", "%p") else shlex.quote(w) for w in words)


def conf_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def write_recovery_config(
    pgdata: Path, settings: Mapping[str, str], *, restore_command: str, comment: str
) -> None:
    """Append the recovery settings to postgresql.auto.conf and create recovery.signal.

    postgresql.auto.conf is read last, so these win over what the backup's own config says.
    """
    lines = [f"\n# {comment}\n", f"restore_command = {conf_quote(restore_command)}\n"]
    lines += [f"{name} = {conf_quote(value)}\n" for name, value in settings.items()]
    with (pgdata / AUTO_CONF).open("a") as conf:
        conf.writelines(lines)
    (pgdata / RECOVERY_SIGNAL).touch()
