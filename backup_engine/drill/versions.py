"""What the drill ran with: server versions and the tool's own git commit, for the report."""

from __future__ import annotations

import re
from pathlib import Path

from backup_engine.errors import BackupEngineError
from backup_engine.postgres.binaries import find_pg_binaries
from backup_engine.process import run


def _version(argv: list[str], pattern: str) -> str | None:
    try:
        output = run(argv, check=False, timeout=10).stdout
    except BackupEngineError:
        return None
    match = re.search(pattern, output)
    return match.group(1) if match else None


def server_versions() -> dict[str, str | None]:
    try:
        postgres = str(find_pg_binaries().path("postgres"))
    except BackupEngineError:
        postgres = "postgres"
    return {
        "postgresql": _version([postgres, "--version"], r"(\d+\.\d+)"),
        "redis": _version(["redis-server", "--version"], r"v=(\S+)"),
    }


def git_sha(directory: Path) -> str | None:
    """The commit of the checkout the tool runs from, if it is one."""
    try:
        result = run(["git", "-C", str(directory), "rev-parse", "HEAD"], check=False, timeout=10)
    except BackupEngineError:
        return None
    sha = result.stdout.strip()
    return sha if result.ok and re.fullmatch(r"[0-9a-f]{40}", sha) else None
