"""`backup-engine drill` end to end: evidence files, schema, tamper detection, signatures,
webhook, metrics and history. Runs real (small) scenarios through the command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families

from backup_engine.drill.report import report_schema
from backup_engine.net import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@dataclass
class Hook:
    url: str
    status: int = 200
    received: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def webhook() -> Iterator[Hook]:
    hook = Hook("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            hook.received.append(json.loads(self.rfile.read(length)))
            self.send_response(hook.status)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield hook
    server.shutdown()
    server.server_close()


def drill(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("BACKUP_ENGINE", "DRILL_"))}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "backup_engine", "drill", *args],
        capture_output=True, text=True, cwd=cwd, env=full, check=False, timeout=600,
    )  # fmt: skip


def test_a_passing_drill_leaves_complete_evidence(tmp_path: Path, webhook: Hook) -> None:
    report = tmp_path / "evidence"
    metrics = tmp_path / "restore_drill.prom"
    (tmp_path / "repo").mkdir()
    keep = {"BACKUP_ENGINE_REPOSITORY": f"file://{tmp_path / 'repo'}"}
    out = drill(
        "--tags", "full_restore", "--report-dir", str(report), "--webhook", webhook.url,
        "--metrics-file", str(metrics), "--keep-in-repository", cwd=tmp_path, env=keep,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    stored = json.loads(drill("history", "--from-repository", "--json", cwd=tmp_path,
                              env=keep).stdout)  # fmt: skip
    assert [r["passed"] for r in stored["runs"]] == [True]
    iso = next(c for c in stored["controls"] if c["control"] == "ISO/IEC 27001:2022 A.8.13")
    assert iso["last_passed_at"] and len(iso["evidence_sha256"]) == 64
    assert "3 of 3 scenarios passed" in out.stdout
    names = {p.name for p in report.iterdir()}
    assert names >= {"report.json", "report.html", "junit.xml", "cucumber.json", "SHA256SUMS"}

    data = json.loads((report / "report.json").read_text())
    jsonschema.validate(data, report_schema())
    assert data["passed"] and data["summary"]["passed"] == 3
    first = data["scenarios"][0]
    assert first["backups"] and all(len(s) == 64 for s in first["backups"][0]["sha256"].values())
    assert first["measurements"][0]["name"] == "RTO" and first["measurements"][0]["passed"]
    assert any(c["name"].startswith("orphans of") for c in first["checks"])
    assert data["versions"]["postgresql"] and data["tool"]["version"]
    # Where the data came from, and what was compared, for every scenario.
    for scenario in data["scenarios"]:
        assert scenario["provenance"]["data"] == "synthetic"
        assert scenario["provenance"]["repository"].startswith("s3://")
        assert scenario["checks"], f"{scenario['scenario']} recorded no check"
    restored = first["provenance"]["backups"][0]
    assert restored["system_identifier"] and restored["wal_replayed"]["to_lsn"]
    assert {c["id"] for c in data["controls"]} >= {"SOC 2 A1.3", "NIST SP 800-53 CP-9(1)"}
    html = (report / "report.html").read_text()
    assert "SYNTHETIC: seeded by the drill" in html and "<details" not in html

    junit = ET.parse(report / "junit.xml").getroot()
    assert len(junit.findall(".//testcase")) == 3
    assert len(json.loads((report / "cucumber.json").read_text())[0]["elements"]) == 3

    assert webhook.received and "PASSED: 3 of 3" in webhook.received[0]["text"]
    assert len(webhook.received[0]["attachments"][0]["fields"]) == 3

    samples = {
        s.name: s.value
        for family in text_string_to_metric_families(metrics.read_text())
        for s in family.samples
    }
    assert samples["restore_drill_passed"] == 1
    assert samples["restore_drill_last_success_timestamp_seconds"] > 0
    assert "restore_drill_scenario_rto_seconds" in samples

    verified = drill("verify-report", str(report), cwd=tmp_path)
    assert verified.returncode == 0 and "4 files match" in verified.stdout
    assert "schema valid" in verified.stdout

    tampered = json.loads((report / "report.json").read_text())
    tampered["passed"] = True
    tampered["scenarios"][0]["measurements"][0]["seconds"] = 0.001
    (report / "report.json").write_text(json.dumps(tampered))
    caught = drill("verify-report", str(report), cwd=tmp_path)
    assert caught.returncode == 4 and "report.json does not match" in caught.stderr


FAILING_FEATURE = """
Feature: A drill that must fail
  Scenario: An impossible recovery time
    Given an empty backup repository
    And a running PostgreSQL server with the shop schema and 10 users
    When a full backup is taken
    And the server is destroyed
    And the latest backup is restored into a new server
    Then the measured RTO is within 0.001 seconds
"""


def test_a_failing_drill_exits_1_and_a_broken_webhook_changes_nothing(tmp_path: Path) -> None:
    features = tmp_path / "my-features"
    features.mkdir()
    (features / "impossible.feature").write_text(FAILING_FEATURE)
    (features / "test_mine.py").write_text("from pytest_bdd import scenarios\n\nscenarios('.')\n")
    report = tmp_path / "evidence"
    metrics = tmp_path / "m.prom"
    metrics.write_text("restore_drill_last_success_timestamp_seconds 1700000000.0\n")
    out = drill(
        "--features", str(features), "--report-dir", str(report),
        "--webhook", f"http://127.0.0.1:{free_port()}/nobody", "--metrics-file", str(metrics),
        cwd=tmp_path, env={"DRILL_SIGNING_KEY": "k3y"},
    )  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    assert "OVER target" in out.stdout
    assert "warning: webhook unreachable" in out.stdout
    data = json.loads((report / "report.json").read_text())
    jsonschema.validate(data, report_schema())
    assert data["passed"] is False and data["scenarios"][0]["error"]
    text = metrics.read_text()
    assert "restore_drill_passed 0.0" in text
    assert "restore_drill_last_success_timestamp_seconds 1.7e+09" in text  # kept from before

    assert (report / "SHA256SUMS.hmac").exists()
    signed = drill("verify-report", str(report), cwd=tmp_path, env={"DRILL_SIGNING_KEY": "k3y"})
    assert signed.returncode == 0 and "HMAC valid" in signed.stdout
    wrong = drill("verify-report", str(report), cwd=tmp_path, env={"DRILL_SIGNING_KEY": "nope"})
    assert wrong.returncode == 4 and "signature" in wrong.stderr
    unkeyed = drill("verify-report", str(report), cwd=tmp_path)
    assert unkeyed.returncode == 2 and "DRILL_SIGNING_KEY" in unkeyed.stderr

    history = drill("history", "--report-root", str(tmp_path), "--json", cwd=tmp_path)
    runs = json.loads(history.stdout)["runs"]
    assert len(runs) == 1 and runs[0]["passed"] is False


def test_no_matching_scenario_is_an_error(tmp_path: Path) -> None:
    none = drill("--tags", "redis and retention", cwd=tmp_path)
    assert none.returncode == 2 and "no scenario matches" in none.stderr
    unknown = drill("--tags", "no_such_tag", cwd=tmp_path)
    assert unknown.returncode == 2 and "Unknown marker" in unknown.stderr


def test_a_configuration_without_a_repository_never_drills_synthetic_data(tmp_path: Path) -> None:
    config = tmp_path / "prod.toml"
    config.write_text('[postgres]\ndsn = "host=db1"\n')
    out = subprocess.run(
        [sys.executable, "-m", "backup_engine", "--config", str(config), "drill",
         "--tags", "latest_backup", "--report-dir", str(tmp_path / "evidence")],
        capture_output=True, text=True, cwd=tmp_path, check=False, timeout=600,
        env={k: v for k, v in os.environ.items() if not k.startswith(("BACKUP_ENGINE", "DRILL_"))},
    )  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    assert "names no repository" in out.stdout
    data = json.loads((tmp_path / "evidence" / "report.json").read_text())
    assert data["passed"] is False


def test_a_random_recovery_point_is_chosen_reproducibly_within_the_window() -> None:
    from dataclasses import replace
    from datetime import timedelta

    from backup_engine.drill.selection import choose_backup
    from tests.test_manifest import sample_manifest

    now = sample_manifest().stop_time + timedelta(days=1)
    backups = [
        replace(sample_manifest(), backup_id=f"b{day}", stop_time=now - timedelta(days=40 - day))
        for day in range(40)
    ]
    first = choose_backup(backups, "random:7:42", now)
    assert first == choose_backup(backups, "random:7:42", now)  # the seed is the recipe
    assert now - first[0].stop_time <= timedelta(days=7)
    assert "seed 42" in first[1] and "7 backups" in first[1]
    assert choose_backup(backups, "latest", now) == (backups[-1], "latest")
    picks = {choose_backup(backups, f"random:30:{seed}", now)[0].backup_id for seed in range(50)}
    assert len(picks) > 10  # older backups get drilled too
    assert choose_backup(backups, "latest:2", now) == (backups[-1], "latest within 2 days")
    from backup_engine.drill.selection import selection_value
    from backup_engine.errors import BackupNotFound, UsageError

    stopped = [b for b in backups if now - b.stop_time > timedelta(days=5)]
    for selection in ("latest:3", "random:3:1"):  # the backups stopped 5 days ago
        with pytest.raises(BackupNotFound, match="no base backup of the last 3 days"):
            choose_backup(stopped, selection, now)
    assert selection_value("latest", 7, None) == "latest:7"
    assert selection_value("random", None, 5) == "random:30:5"
    for days in (0, 366, 10000):
        with pytest.raises(UsageError, match="1 to 365"):
            selection_value("random", days, 1)


def test_check_names_undefined_steps_with_their_line_and_the_closest_ones(tmp_path: Path) -> None:
    features = tmp_path / "mine"
    features.mkdir()
    (features / "ours.feature").write_text(
        "Feature: ours\n  Scenario: lost\n    Given an empty backup repository\n"
        "    When the server is vaporised\n"
    )
    ok = drill("--check", cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = drill("--check", "--features", str(features), cwd=tmp_path)
    assert bad.returncode == 2
    assert f"{features / 'ours.feature'}:4: no step definition matches" in bad.stdout
    assert "closest: When the server is destroyed" in bad.stdout
    run = drill("--features", str(features), "--report-dir", str(tmp_path / "ev"), cwd=tmp_path)
    assert run.returncode == 2 and "cannot run as written" in run.stderr  # before any server
    assert not (tmp_path / "ev" / "report.json").exists()


def test_the_documented_step_list_is_the_catalog_from_the_code(tmp_path: Path) -> None:
    catalog = drill("steps", "--markdown", cwd=tmp_path)
    assert catalog.returncode == 0 and catalog.stdout.startswith("```gherkin\n")
    steps = (Path(__file__).parent.parent / "docs" / "steps.md").read_text()
    assert steps.endswith(catalog.stdout), "regenerate: backup-engine drill steps --markdown"


def test_a_skipped_scenario_is_reported_as_skipped_not_failed(tmp_path: Path) -> None:
    """The incremental scenarios skip on a server older than 17 (an environment limit): the
    summary an auditor reads must say SKIP and count them, never FAIL, and the drill is
    incomplete (exit 6, never 0) unless the operator accepts skips."""
    out = drill("--tags", "incremental", "--report-dir", str(tmp_path / "evidence"), cwd=tmp_path)
    lines = out.stdout.splitlines()
    assert not [line for line in lines if line.startswith("FAIL")], out.stdout
    report = json.loads((tmp_path / "evidence" / "report.json").read_text())
    if report["summary"]["passed"] == 8:  # a host with PostgreSQL 17: nothing to skip
        assert out.returncode == 0 and report["result"] == "passed"
        return
    assert "Restore drill INCOMPLETE: 0 of 8 scenarios passed, 8 skipped (exit 6)" in out.stdout
    assert out.returncode == 6 and report["result"] == "incomplete" and not report["passed"]
    assert "skipped: " in report["scenarios"][0]["error"]  # the reason, for the auditor
    assert ">INCOMPLETE<" in (tmp_path / "evidence" / "report.html").read_text()
    accepted = drill("--tags", "incremental", "--allow-skips", "--report-root",
                     str(tmp_path / "runs"), cwd=tmp_path)  # fmt: skip
    assert accepted.returncode == 0, accepted.stdout
    assert "8 skipped (accepted: --allow-skips) (exit 0)" in accepted.stdout
