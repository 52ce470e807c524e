"""The alert rules file, and `check` / `metrics` against a real server and store."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from backup_engine.config import load_settings
from backup_engine.drill.embedded_s3 import EmbeddedS3
from backup_engine.drill.metrics import ALL_METRICS
from backup_engine.health import CRITICAL, OK, WARNING, _age_finding
from backup_engine.postgres.connection import connect
from backup_engine.postgres.recovery_config import tool_command
from backup_engine.servers import LocalPostgresBackend, PostgresServer
from backup_engine.storage import S3Storage

ALERTS = Path(__file__).parent.parent / "monitoring" / "alerts.yml"


def test_alert_rules_are_well_formed_and_use_our_metrics() -> None:
    rules = yaml.safe_load(ALERTS.read_text())
    group = rules["groups"][0]
    assert group["name"] == "restore-drill"
    names = {rule["alert"] for rule in group["rules"]}
    assert names >= {
        "BackupMissing",
        "BackupFailed",
        "RestoreDrillFailed",
        "RestoreDrillIncomplete",
        "RestoreDrillNotRun",
        "WalArchivingOff",
        "WalArchiveFailing",
        "WalArchiveLagging",
        "ArchiverMetricsStale",
        "RestoreRtoOverTarget",
    }
    for rule in group["rules"]:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "0s"))
        used = set(re.findall(r"restore_drill_[a-z_]+", rule["expr"]))
        assert used and used <= set(ALL_METRICS), (rule["alert"], used - set(ALL_METRICS))
    backup = next(r for r in group["rules"] if r["alert"] == "BackupMissing")
    assert "26 * 3600" in backup["expr"]


def test_every_alert_fires_and_stays_quiet_in_promtool_tests() -> None:
    """Debian's `prometheus` package provides promtool (scripts/install-system-packages.sh)."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (make setup does)"
    checked = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True,
                             text=True, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tests = ALERTS.with_name("alerts.test.yml")
    run_ = subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True,
                          text=True, check=False, cwd=ALERTS.parent)  # fmt: skip
    assert run_.returncode == 0, run_.stdout + run_.stderr
    cases = [c for t in yaml.safe_load(tests.read_text())["tests"] for c in t["alert_rule_test"]]
    fired = {c["alertname"] for c in cases if c["exp_alerts"]}
    quiet = {c["alertname"] for c in cases if not c["exp_alerts"]}
    rules = {r["alert"] for r in yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]}
    assert rules <= fired and rules <= quiet, (rules - fired, rules - quiet)


def test_a_configured_kind_without_a_backup_is_written_as_ended_at_zero(tmp_path: Path) -> None:
    from backup_engine.metrics import read_repository, write_backup_metrics
    from backup_engine.storage import LocalStorage

    (tmp_path / "repo").mkdir()
    textfile = tmp_path / "backups.prom"
    state = read_repository(LocalStorage(tmp_path / "repo"))
    write_backup_metrics(textfile, [state], expected=("redis",))
    assert 'restore_drill_backup_last_timestamp_seconds{kind="redis"} 0.0' in textfile.read_text()


def test_age_thresholds() -> None:
    settings = load_settings(None, env={"BACKUP_ENGINE_REPOSITORY": "file:///x"})
    now = datetime(2026, 11, 25, 12, tzinfo=UTC)
    assert _age_finding("redis", now - timedelta(hours=2), settings, now).state == OK
    assert _age_finding("redis", now - timedelta(hours=25), settings, now).state == WARNING
    assert _age_finding("redis", now - timedelta(hours=27), settings, now).state == CRITICAL
    assert _age_finding("redis", None, settings, now).state == CRITICAL


@pytest.fixture
def server_and_repo(embedded_s3: EmbeddedS3) -> Iterator[tuple[PostgresServer, S3Storage]]:
    repo = embedded_s3.storage(f"check-{os.urandom(4).hex()}")
    with LocalPostgresBackend() as backend:
        archive = tool_command(["pg", "wal-push", "%p"], repo_url=repo.url)
        server = backend.create(
            settings={"archive_mode": "on", "archive_command": archive}, env=repo.environment()
        )
        yield server, repo


def run(config: Path, repo: S3Storage, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKUP_ENGINE", "AWS_"))}
    env.update(repo.environment())
    return subprocess.run(
        [sys.executable, "-m", "backup_engine", "--config", str(config), *args],
        capture_output=True, text=True, env=env, check=False, timeout=120,
    )  # fmt: skip


@pytest.mark.postgres
def test_check_and_metrics_commands(
    server_and_repo: tuple[PostgresServer, S3Storage], tmp_path: Path
) -> None:
    server, repo = server_and_repo
    config = tmp_path / "backup-engine.toml"
    config.write_text(f'[repository]\nurl = "{repo.url}"\n[postgres]\ndsn = "{server.dsn()}"\n')
    before = run(config, repo, "check")
    assert before.returncode == 2
    assert before.stdout.startswith(
        "BACKUP CRITICAL - postgres backup: no complete postgres backup"
    )

    assert run(config, repo, "pg", "backup").returncode == 0
    healthy = run(config, repo, "check")
    assert healthy.returncode == 0, healthy.stdout
    assert healthy.stdout.startswith("BACKUP OK")
    assert "wal_probe_seconds=" in healthy.stdout and "postgres_age_hours=" in healthy.stdout
    assert "WAL archiving: segment" in healthy.stdout
    assert re.search(r"OK +WAL backlog: \d+ segments \(\d+ MB\) waiting", healthy.stdout)

    # The archiver stops (archive_command says no): segments pile up past the limit.
    with connect(server.dsn()) as conn:
        conn.execute("ALTER SYSTEM SET archive_command = 'false'")
        conn.execute("SELECT pg_reload_conf()")
        time.sleep(1)  # the archiver reads the new command
        conn.execute("CREATE TABLE filler (n int)")
        for _ in range(4):
            conn.execute("INSERT INTO filler VALUES (1)")
            conn.execute("SELECT pg_switch_wal()")
    config.write_text(config.read_text() + "[wal]\nqueue_max_mb = 32\n")
    behind = run(config, repo, "check", "--no-wal-probe")
    assert behind.returncode == 2, behind.stdout  # the failing command, named at once
    assert re.search(r"CRITICAL +WAL archiver: archive_command failed for [0-9A-F]{24} at .* "
                     r"and nothing was archived since", behind.stdout), behind.stdout  # fmt: skip
    archiver = tmp_path / "archiver.prom"
    assert run(config, repo, "metrics", "--archiver", "--textfile", str(archiver)).returncode == 0
    state = {s.name: s.value for f in text_string_to_metric_families(archiver.read_text())
             for s in f.samples}  # fmt: skip
    assert state["restore_drill_archiver_up"] == 1 and state["restore_drill_archiver_configured"]
    assert state["restore_drill_archiver_last_failed_timestamp_seconds"] > state.get(
        "restore_drill_archiver_last_archived_timestamp_seconds", 0
    )  # what WalArchiveFailing reads
    assert abs(state["restore_drill_archiver_oldest_ready_timestamp_seconds"] - time.time()) < 600
    assert state["restore_drill_wal_backlog_limit_bytes"] == 32 << 20
    assert state["restore_drill_wal_backlog_bytes"] >= 3 * (16 << 20)
    found = re.search(r"WARNING +WAL backlog: (\d+) segments \((\d+) MB\) waiting to be "
                      r"archived, above \[wal\] queue_max_mb = 32", behind.stdout)  # fmt: skip
    assert found and int(found[1]) >= 3 and int(found[2]) == 16 * int(found[1]), behind.stdout
    assert f"wal_backlog_mb={found[2]};32" in behind.stdout
    with connect(server.dsn()) as conn:  # archiving again, for the metrics below
        conn.execute("ALTER SYSTEM RESET archive_command")
        conn.execute("SELECT pg_reload_conf()")

    textfile = tmp_path / "backups.prom"
    assert run(config, repo, "metrics", "--textfile", str(textfile)).returncode == 0
    samples = [s for f in text_string_to_metric_families(textfile.read_text()) for s in f.samples]
    last = {
        s.labels.get("kind"): s.value
        for s in samples
        if s.name == "restore_drill_backup_last_timestamp_seconds"
    }
    assert abs(last["postgres"] - datetime.now(UTC).timestamp()) < 300
    assert any(s.name == "restore_drill_wal_last_archived_timestamp_seconds" for s in samples)


def test_check_reports_an_unreachable_store_as_critical(
    tmp_path: Path, embedded_s3: EmbeddedS3
) -> None:
    repo = embedded_s3.storage("x")
    config = tmp_path / "backup-engine.toml"
    config.write_text('[repository]\nurl = "s3://no-such-bucket/p"\n')
    out = run(config, repo, "check")
    assert out.returncode == 2
    assert "bucket no-such-bucket does not exist" in out.stdout


def test_nightly_workflow_runs_the_readme_drill_and_keeps_the_evidence() -> None:
    workflow = Path(__file__).parent.parent / ".github" / "workflows" / "restore-drill.yml"
    data = yaml.safe_load(workflow.read_text())
    triggers = data.get("on", data.get(True))  # YAML 1.1 reads a bare `on` as true
    assert triggers["schedule"][0]["cron"].count(" ") == 4
    steps = data["jobs"]["drill"]["steps"]
    commands = " ".join(step.get("run", "") for step in steps)
    assert "make drill" in commands and "verify-report" in commands
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and upload["with"]["path"] == "drill-report/nightly"


def test_the_archiver_of_a_server_that_cannot_be_reached_is_critical(tmp_path: Path) -> None:
    from backup_engine.health import archiver_findings

    env = {"BACKUP_ENGINE_REPOSITORY": "file:///x",
           "BACKUP_ENGINE_PG_DSN": "host=127.0.0.1 port=1 connect_timeout=2"}  # fmt: skip
    findings, probe = archiver_findings(load_settings(None, env=env))
    assert [f.state for f in findings] == [CRITICAL] and not probe
    assert "cannot connect to PostgreSQL" in findings[0].message
    assert "\n" not in findings[0].message
    textfile = tmp_path / "archiver.prom"
    down = subprocess.run(
        [sys.executable, "-m", "backup_engine", "metrics", "--archiver", "--textfile",
         str(textfile)],
        capture_output=True, text=True, check=False, timeout=60,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("BACKUP_ENGINE")}, **env},
    )  # fmt: skip
    assert down.returncode == 3 and "archiver state not read" in down.stderr
    assert "restore_drill_archiver_up 0.0" in textfile.read_text()  # down, not silent


@pytest.mark.postgres
def test_check_names_archive_mode_off_at_once(tmp_path: Path, embedded_s3: EmbeddedS3) -> None:
    """Without archiving, `check` says which setting, instead of waiting out the WAL probe."""
    repo = embedded_s3.storage(f"off-{os.urandom(4).hex()}")
    with LocalPostgresBackend() as backend:
        server = backend.create(settings={"archive_mode": "off"})
        config = tmp_path / "backup-engine.toml"
        config.write_text(f'[repository]\nurl = "{repo.url}"\n[postgres]\ndsn = "{server.dsn()}"\n')
        out = run(config, repo, "check")
    assert out.returncode == 2, out.stdout
    assert re.search(
        r"CRITICAL +WAL archiver: archive_mode is off: PostgreSQL archives no WAL", out.stdout
    ), out.stdout
    assert "wal_probe_seconds" not in out.stdout and "did not reach" not in out.stdout
