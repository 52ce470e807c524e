"""`run-all` runs every configured backup, continues past a failure, and says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from backup_engine.drill.media_data import make_media_tree
from backup_engine.net import free_port
from backup_engine.servers import LocalPostgresBackend, PostgresServer

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with LocalPostgresBackend() as backend:
        yield backend.create()


def run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKUP_ENGINE", "REDIS_"))}
    return subprocess.run(
        [sys.executable, "-m", "backup_engine", "--config", str(config), *args],
        capture_output=True, text=True, env=env, check=False, timeout=300,
    )  # fmt: skip


def test_one_failure_does_not_stop_the_others(server: PostgresServer, tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    make_media_tree(tmp_path / "uploads", large_mb=1)
    config = tmp_path / "backup-engine.toml"
    config.write_text(
        f'[repository]\nurl = "file://{tmp_path / "repo"}"\n'
        f'[postgres]\ndsn = "{server.dsn()}"\n'
        f'[redis]\nurl = "redis://127.0.0.1:{free_port()}/0"\n'  # nothing listens there
        f'[media]\npaths = ["{tmp_path / "uploads"}"]\n'
    )
    out = run(config, "run-all", "--json")
    assert out.returncode == 1
    results = {r["job"]: r for r in json.loads(out.stdout)}
    assert results["postgres"]["status"] == "ok" and results["postgres"]["backup_id"]
    assert results["redis"]["status"] == "failed"
    assert "cannot connect to Redis" in results["redis"]["error"]
    media = results[f"media {tmp_path / 'uploads'}"]
    assert media["status"] == "ok" and media["stored_bytes"] > 0

    table = run(config, "run-all")
    assert table.returncode == 1
    assert "failed" in table.stdout and "postgres" in table.stdout

    plan = run(config, "expire", "--dry-run", "--json")
    assert plan.returncode == 0, plan.stderr
    items = json.loads(plan.stdout)["items"]
    assert {i["kind"] for i in items} >= {"postgres", "media"}
    assert all(i["keep"] for i in items if i["kind"] in ("postgres", "media"))  # all fresh


def test_nothing_configured(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    config = tmp_path / "backup-engine.toml"
    config.write_text(f'[repository]\nurl = "file://{tmp_path / "repo"}"\n')
    out = run(config, "run-all")
    assert out.returncode == 2  # a cron job with a broken configuration must not succeed
    assert "nothing to back up" in out.stderr and "Traceback" not in out.stderr
    checked = run(config, "check", "--no-wal-probe")
    assert checked.returncode == 2, checked.stdout
    assert checked.stdout.startswith("BACKUP CRITICAL - config: nothing is configured to back up")
    as_json = run(config, "check", "--no-wal-probe", "--json")
    assert as_json.returncode == 2
    report = json.loads(as_json.stdout)
    assert report["state"] == "CRITICAL" and report["exit_code"] == 2
    assert {"name": "storage", "state": "OK"}.items() <= report["findings"][1].items()
