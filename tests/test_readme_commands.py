"""The README's commands work as written: every shell block marked `<!-- runnable ... -->` runs
with bash, unchanged, against a throwaway PostgreSQL server that archives into the embedded S3,
configured the way the README says (a config file named by BACKUP_ENGINE_CONFIG)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from backup_engine.drill.embedded_s3 import EmbeddedS3
from backup_engine.postgres.recovery_config import tool_command
from backup_engine.servers import LocalPostgresBackend

README = Path(__file__).parent.parent / "README.md"
RUNNABLE = re.compile(r"<!-- runnable[^>]*-->\n```sh\n(.*?)```", re.S)


def runnable_blocks() -> list[str]:
    return RUNNABLE.findall(README.read_text())


def test_the_readme_marks_its_runnable_blocks() -> None:
    blocks = runnable_blocks()
    assert blocks, "no block of the README is marked runnable"
    assert any("pg restore latest" in block for block in blocks)


@pytest.mark.postgres
@pytest.mark.parametrize("block", runnable_blocks(), ids=lambda b: b.split()[1])
def test_a_runnable_block_runs_as_written(
    block: str, tmp_path: Path, embedded_s3: EmbeddedS3
) -> None:
    repo = embedded_s3.storage(f"readme-{os.urandom(4).hex()}")
    with LocalPostgresBackend() as backend:
        archive = tool_command(["pg", "wal-push", "%p"], repo_url=repo.url)
        server = backend.create(
            settings={"archive_mode": "on", "archive_command": archive}, env=repo.environment()
        )
        config = tmp_path / "backup-engine.toml"
        config.write_text(f'[repository]\nurl = "{repo.url}"\n[postgres]\ndsn = "{server.dsn()}"\n')
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("BACKUP_ENGINE", "AWS_", "DRILL_"))}  # fmt: skip
        env.update(repo.environment(), BACKUP_ENGINE_CONFIG=str(config))
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        work = tmp_path / "work"
        work.mkdir()
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=work, env=env,
                              capture_output=True, text=True, check=False, timeout=600)  # fmt: skip
    assert done.returncode == 0, f"{block}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    if "pg restore latest --pgdata ./restored" in block:
        assert (work / "restored" / "PG_VERSION").is_file()
    if "runbook > runbook.md" in block:
        assert "pg restore latest" in (work / "runbook.md").read_text()
