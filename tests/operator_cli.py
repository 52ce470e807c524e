"""The command line as an operator runs it, against a repository in the embedded S3 server:
a fresh process, only the repository's own credentials in its environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from backup_engine.storage import S3Storage


def cli(repo: S3Storage, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BACKUP_ENGINE"))}
    env.update(repo.environment())
    return subprocess.run(
        [sys.executable, "-m", "backup_engine", "--repo", repo.url, *args],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip


def cli_with_config(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command line with a configuration file and nothing from this environment."""
    return subprocess.run(
        [sys.executable, "-m", "backup_engine", "--config", str(config), *args],
        capture_output=True, text=True, check=False, timeout=300,
        env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
