"""The docker backend: the same drills on containers, docker-compose.restore-test.yml brought
up for real, and one-line errors when Docker or its image is missing.

Needs a Docker engine and the image scripts/build-test-image.sh builds (`.ci/run` starts both);
where no engine can run, these tests are skipped with that reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from backup_engine.codecs import get_codec
from backup_engine.drill.embedded_s3 import EmbeddedS3
from backup_engine.drill.in_image import image_for
from backup_engine.drill.seed import seed_shop
from backup_engine.errors import ConfigError, Unreachable
from backup_engine.net import free_port
from backup_engine.postgres.archiving import switch_and_wait_archived
from backup_engine.postgres.basebackup import BaseBackupOptions, take_base_backup
from backup_engine.postgres.connection import connect
from backup_engine.postgres.recovery_config import tool_command
from backup_engine.servers import LocalPostgresBackend
from backup_engine.servers.docker_servers import DEFAULT_IMAGE, DockerPostgresBackend, check_docker

CHECKOUT = Path(__file__).resolve().parent.parent
# The local run holds every drill; these prove the container backend and moto's S3 model on
# each kind of work (restore, tablespaces, damage, Object Lock, Redis), 15 scenarios.
DOCKER_TAGS = "full_restore or redis or tablespaces or corruption or object_lock"


def _docker_ready() -> str | None:
    try:
        check_docker()
    except (Unreachable, ConfigError) as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - any reason is a reason to skip
        return f"{type(exc).__name__}: {exc}"
    return None


NOT_READY = _docker_ready()
needs_docker = pytest.mark.skipif(
    NOT_READY is not None,
    reason=f"environment limit: no Docker engine with the {DEFAULT_IMAGE} image here "
    f"({NOT_READY}); .ci/run starts dockerd and builds the image",
)


def test_missing_image_and_unreachable_daemon_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(Unreachable, match="--backend local"):
        check_docker()
    out = subprocess.run(
        [sys.executable, "-m", "backup_engine", "drill", "--backend", "docker"],
        capture_output=True, text=True, check=False, timeout=60,
        env={**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"},
    )  # fmt: skip
    assert out.returncode == 3
    assert out.stderr.count("\n") == 1 and "--backend local" in out.stderr


def test_a_version_without_an_image_is_one_line(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "backup_engine", "drill", "--pg-version", "16"],
        capture_output=True, text=True, check=False, timeout=60, cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "DRILL_PG16_IMAGE"},
    )  # fmt: skip
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "no server image is known for PostgreSQL 16" in out.stderr
    assert "DRILL_PG16_IMAGE" in out.stderr


@needs_docker
def test_a_missing_image_names_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"scripts/build-test-image\.sh"):
        DockerPostgresBackend(image="restore-drill/no-such-image:1")


@needs_docker
@pytest.mark.postgres
@pytest.mark.slow
def test_the_same_drills_run_on_containers(tmp_path: Path) -> None:
    """On moto's S3 model this time: the local run of the same drills uses SeaweedFS, so each
    of these drills passes on both implementations."""
    out = subprocess.run(
        [sys.executable, "-m", "backup_engine", "drill", "--backend", "docker",
         "--tags", DOCKER_TAGS,
         "--report-dir", str(tmp_path / "evidence")],
        capture_output=True, text=True, check=False, timeout=900, cwd=tmp_path,
        env={**os.environ, "DRILL_S3_SERVER": "moto"},
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    report = json.loads((tmp_path / "evidence" / "report.json").read_text())
    assert report["passed"] and report["summary"]["passed"] >= 15


SMOKE_IN_IMAGE = """
@postgres
Feature: The application's image checks the restored copy
  Scenario: Its own smoke test, in its own container, on the restored server's network
    Given an empty backup repository
    And a running PostgreSQL server with the shop schema and 25 users
    When a full backup is taken
    And the server is destroyed
    And the latest backup is restored into a new server
    Then the smoke test "COMMAND" passes against the restored copy within 2 minutes
"""
SMOKE_COMMAND = (  # the application's image, on the host network the restored server is on
    "docker run --rm --network host -e PGHOST -e PGPORT -e PGUSER -e PGDATABASE "
    f"{DEFAULT_IMAGE} psql -XAtc 'SELECT count(*) FROM users' | grep -x 25"
)


@needs_docker
@pytest.mark.postgres
def test_an_application_image_runs_its_smoke_test_against_the_restored_copy(
    tmp_path: Path,
) -> None:
    features = tmp_path / "features"
    features.mkdir()
    (features / "smoke.feature").write_text(SMOKE_IN_IMAGE.replace("COMMAND", SMOKE_COMMAND))
    out = subprocess.run(
        [sys.executable, "-m", "backup_engine", "drill", "--backend", "docker", "--features",
         str(features), "--report-dir", str(tmp_path / "evidence")],
        capture_output=True, text=True, check=False, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    [log] = (tmp_path / "evidence" / "smoke").iterdir()
    assert "25" in log.read_text() and "# exit 0" in log.read_text()


# What depends on the server's version: incremental backups (17 only), recovery targets and
# timelines, pg_dump/pg_restore of one table; 21 scenarios (the rest run on this host's 15).
PG17_TAGS = "full_restore or timelines or table_restore or incremental"
PG17_IMAGE = image_for(17)


def _image_present(image: str) -> bool:
    if shutil.which("docker") is None:
        return False
    found = subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False)
    return found.returncode == 0


@pytest.mark.skipif(
    NOT_READY is not None or not _image_present(PG17_IMAGE),
    reason=f"environment limit: no Docker engine with the {PG17_IMAGE} image here (PostgreSQL "
    "17 is not packaged for this host's Debian); .ci/run builds it with "
    "scripts/build-test-image.sh all",
)
@pytest.mark.postgres
@pytest.mark.slow
def test_the_drills_run_on_postgresql_17(tmp_path: Path) -> None:
    """Full restore, timelines, table restore and the incremental-backup drills, inside
    the PostgreSQL 17 image: nothing skipped there, and the evidence records version 17."""
    out = subprocess.run(
        [sys.executable, "-m", "backup_engine", "drill", "--pg-version", "17",
         "--tags", PG17_TAGS, "--report-dir", str(tmp_path / "evidence")],
        capture_output=True, text=True, check=False, timeout=1500, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    report = json.loads((tmp_path / "evidence" / "report.json").read_text())
    assert report["versions"]["postgresql"].startswith("17.")
    summary = report["summary"]
    assert report["passed"] and summary["skipped"] == 0 and summary["passed"] >= 21, summary
    incremental = [s for s in report["scenarios"] if "incremental" in s["tags"]]
    assert len(incremental) == 8 and all(s["status"] == "passed" for s in incremental)


@needs_docker
@pytest.mark.postgres
def test_restore_test_compose_file_checks_a_restored_server(
    tmp_path: Path, embedded_s3: EmbeddedS3
) -> None:
    """The README's flow: `pg restore latest` on the host, then compose up. The restored server
    recovers in its container through the tool's wal-fetch (the checkout is mounted, the
    repository settings passed through), so rows committed after the backup come back."""
    compose = shutil.which("docker-compose") or "docker-compose"
    tool = CHECKOUT / ".venv" / "bin" / "backup-engine"
    assert tool.exists(), "the compose file runs the checkout's .venv (make setup)"
    project = f"restoretest{uuid.uuid4().hex[:8]}"
    report = f"restore-test/report-{project}"
    repo = embedded_s3.storage(f"compose-{uuid.uuid4().hex[:8]}")
    repository_env = {**repo.environment(), "BACKUP_ENGINE_REPOSITORY": repo.url}
    env = {
        **os.environ,
        **repository_env,
        "RESTORE_TEST_PGDATA": str(tmp_path / "pgdata"),
        "RESTORE_TEST_PORT": str(free_port()),
        "RESTORE_TEST_REPORT": report,
        "PWD": str(CHECKOUT),
    }
    base = [compose, "-f", str(CHECKOUT / "docker-compose.restore-test.yml"), "-p", project]
    config = subprocess.run(
        [*base, "config"], capture_output=True, text=True, env=env, cwd=CHECKOUT
    )
    assert config.returncode == 0, config.stderr

    archive = tool_command(["pg", "wal-push", "%p"], repo_url=repo.url)
    with LocalPostgresBackend() as servers:
        source = servers.create(
            settings={"archive_mode": "on", "archive_command": archive}, env=repo.environment()
        )
        seed_shop(source.dsn(), users=60)
        take_base_backup(repo, get_codec("zstd"), BaseBackupOptions(dsn=source.dsn()))
        with connect(source.dsn()) as conn:  # after the backup: only the WAL brings them back
            conn.execute(
                "INSERT INTO users (email, name, created_at) SELECT 'late' || i || '@example.com',"
                " 'Late ' || i, now() FROM generate_series(1, 40) AS i"
            )
        switch_and_wait_archived(source.dsn(), repo)
    restored = subprocess.run(
        [str(tool), "pg", "restore", "latest", "--pgdata", str(tmp_path / "pgdata"),
         "--no-progress"],
        capture_output=True, text=True, env=env, cwd=CHECKOUT,
    )  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    assert "archiving: off" in restored.stdout
    try:
        up = subprocess.run(
            [*base, "up", "--abort-on-container-exit", "--exit-code-from", "drill"],
            capture_output=True, text=True, env=env, cwd=CHECKOUT, timeout=600,
        )  # fmt: skip
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-2000:]
        evidence = json.loads((CHECKOUT / report / "report.json").read_text())
        assert evidence["passed"]
        checks = evidence["scenarios"][0]["checks"]
        assert "DRILL_TARGET_DSN" in evidence["scenarios"][0]["provenance"]["server"]
        assert any(  # 60 + 40 replayed in the container
            c["name"] == "rows in users" and c["actual"] == "100" for c in checks
        )
    finally:
        subprocess.run([*base, "down", "-v"], capture_output=True, env=env, cwd=CHECKOUT)
        shutil.rmtree(CHECKOUT / report, ignore_errors=True)
