"""The recovery configuration of a restored data directory, and the commands PostgreSQL runs to
archive and fetch WAL through this tool.

A restored directory must carry no recovery intent from the past. A base backup copies
`postgresql.auto.conf` as it was on the server, and a server that was itself restored to a point
in time still has that old `recovery_target_time` in it: left alone, every restore of every later
backup would stop at the old target (or fail with "multiple recovery targets specified"). So,
as pgBackRest does, every recovery setting found in the restored config files is commented out
with a note, signal files and a pre-12 `recovery.conf` are removed, and then exactly the settings
this restore asks for are appended to `postgresql.auto.conf` (read last, so they win over any
include file we did not see), with every other recovery target reset to empty.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from backup_engine.errors import CorruptObject

RECOVERY_SIGNAL = "recovery.signal"
STANDBY_SIGNAL = "standby.signal"
AUTO_CONF = "postgresql.auto.conf"
CONFIG_FILES = ("postgresql.conf", AUTO_CONF)
STALE_FILES = (RECOVERY_SIGNAL, STANDBY_SIGNAL, "recovery.conf")
ARCHIVE_MODES = ("off", "preserve")

# Settings that carry recovery or standby intent (PostgreSQL 12+, plus pre-12 names).
RECOVERY_SETTINGS = frozenset({
    "restore_command", "recovery_target", "recovery_target_lsn", "recovery_target_name",
    "recovery_target_time", "recovery_target_xid", "recovery_target_action",
    "recovery_target_inclusive", "recovery_target_timeline", "recovery_end_command",
    "archive_cleanup_command", "primary_conninfo", "primary_slot_name", "promote_trigger_file",
    "recovery_min_apply_delay", "standby_mode", "trigger_file", "pause_at_recovery_target",
})  # fmt: skip
# Reset explicitly after the removal (all exist in PostgreSQL 13 to 17 with these defaults).
RESETS = {
    "recovery_target": "", "recovery_target_lsn": "", "recovery_target_name": "",
    "recovery_target_time": "", "recovery_target_xid": "", "recovery_end_command": "",
    "archive_cleanup_command": "", "primary_conninfo": "", "primary_slot_name": "",
    "recovery_min_apply_delay": "0",
}  # fmt: skip
_SETTING = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(=|\s)")


_RUN = "from backup_engine.entry import main; main()"


def tool_argv() -> list[str]:
    """How to run this very tool: the interpreter running now, with the package it imports.
    `-c`, not `-m backup_engine`: runpy's imports cost 3.5 ms of the 12 ms a call answered
    from the spool takes, and PostgreSQL makes one call per segment (pip's `backup-engine`
    script costs 5 ms more still: it imports `re`)."""
    return [sys.executable, "-c", _RUN]


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


def fetch_command(repo_url: str, config_file: Path | None = None) -> str:
    """restore_command: PostgreSQL fetches WAL through this tool's `pg wal-fetch`."""
    return tool_command(["pg", "wal-fetch", "%f", "%p"], repo_url=repo_url, config_file=config_file)


def conf_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class ConfigChanges:
    removed: tuple[str, ...]  # "postgresql.auto.conf: recovery_target_time = '...'"
    files_removed: tuple[str, ...]  # signal files, recovery.conf
    written: dict[str, str]  # what this restore set


def _open_regular(pgdata: Path, name: str, flags: int) -> int:
    """Open a file directly inside `pgdata`, never through a symlink (the tar came from the
    repository, which is untrusted: a config file that is a link must not redirect a write)."""
    dir_fd = os.open(pgdata, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == 40:  # ELOOP: a symlink where a config file should be
            raise CorruptObject(
                f"{pgdata / name} in the restored backup is a symbolic link; refusing to edit "
                "the configuration through it"
            ) from None
        raise
    finally:
        os.close(dir_fd)


def _read(pgdata: Path, name: str) -> str | None:
    try:
        fd = _open_regular(pgdata, name, os.O_RDONLY)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as fh:
        return fh.read().decode("utf-8", errors="surrogateescape")


def _replace(pgdata: Path, name: str, text: str) -> None:
    """Write `name` anew (temp file + rename): never half a config file."""
    temp = f".{name}.restore-tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(pgdata / temp)
    fd = _open_regular(pgdata, temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    with os.fdopen(fd, "wb") as fh:
        fh.write(text.encode("utf-8", errors="surrogateescape"))
        fh.flush()
        os.fsync(fh.fileno())
    os.rename(pgdata / temp, pgdata / name)


def neutralise(text: str, note: str) -> tuple[str, list[str]]:
    """Comment out every recovery setting in a config file's text; return what was removed."""
    removed = []
    lines = []
    for line in text.splitlines(keepends=True):
        match = _SETTING.match(line)
        if match and match.group(1).lower() in RECOVERY_SETTINGS:
            removed.append(line.strip())
            lines.append(f"# {note}: {line.lstrip()}")
            if not lines[-1].endswith("\n"):
                lines[-1] += "\n"
        else:
            lines.append(line)
    return "".join(lines), removed


def write_recovery_config(
    pgdata: Path,
    settings: Mapping[str, str],
    *,
    restore_command: str,
    archive_mode: str,
    note: str,
    comment: str,
    signal: str = RECOVERY_SIGNAL,
) -> ConfigChanges:
    """Remove every recovery setting from the restored config, then write exactly these, and
    the signal file (recovery.signal; standby.signal for a standby)."""
    removed: list[str] = []
    for name in CONFIG_FILES:
        try:
            text = _read(pgdata, name)
        except CorruptObject:
            if name == AUTO_CONF:
                raise
            continue  # a linked postgresql.conf is not ours to edit; the resets below win
        if text is None:
            continue
        cleaned, found = neutralise(text, note)
        if found:
            _replace(pgdata, name, cleaned)
            removed += [f"{name}: {line}" for line in found]
    files_removed = []
    for name in STALE_FILES:
        try:
            os.unlink(pgdata / name)
            files_removed.append(name)
        except FileNotFoundError:
            pass
    # Resets first: PostgreSQL refuses ("multiple recovery targets specified") to assign any
    # recovery_target* setting, even an empty one, after one of another kind has a value.
    resets = {k: v for k, v in RESETS.items() if k not in settings}
    written = {**resets, "restore_command": restore_command, **settings}
    if archive_mode == "off":
        written["archive_mode"] = "off"
    block = [f"\n# {comment}\n"] + [f"{k} = {conf_quote(v)}\n" for k, v in written.items()]
    current = _read(pgdata, AUTO_CONF) or ""
    if current and not current.endswith("\n"):
        current += "\n"
    _replace(pgdata, AUTO_CONF, current + "".join(block))
    os.close(_open_regular(pgdata, signal, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
    return ConfigChanges(tuple(removed), tuple(files_removed), written)
