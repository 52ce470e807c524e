"""`backup-engine runbook`: the exact commands for this configuration, timed by a drill report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPORT = {
    "scenarios": [
        {
            "scenario": "Restore the latest base backup after the server is destroyed",
            "measurements": [{"name": "RTO", "seconds": 125.0, "target_seconds": 14400,
                              "passed": True}],
            "phases": [
                {"name": "find the backup and plan the recovery", "seconds": 1.5,
                 "cumulative_seconds": 1.5},
                {"name": "download, check and extract", "seconds": 60.0,
                 "cumulative_seconds": 61.5},
                {"name": "start the server and replay WAL", "seconds": 63.5,
                 "cumulative_seconds": 125.0},
            ],
            "runbook": [
                {"milestone": "backup restored, server recovered", "seconds": 125.0,
                 "target_seconds": 1800, "passed": True},
                {"milestone": "data verified", "seconds": 155.0, "target_seconds": 2700,
                 "passed": True},
            ],
        }
    ]
}  # fmt: skip


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BACKUP_ENGINE")}
    clean.update(BACKUP_ENGINE_REPOSITORY="s3://acme-backups/prod", **env)
    return subprocess.run([sys.executable, "-m", "backup_engine", "runbook", *args],
                          capture_output=True, text=True, env=clean, cwd=tmp_path,
                          check=False, timeout=60)  # fmt: skip


def test_the_runbook_is_timed_by_the_newest_drill_report(tmp_path: Path) -> None:
    for name, scale in (("20261101T000000Z", 10.0), ("20261129T000000Z", 1.0)):
        report = json.loads(json.dumps(REPORT))
        report["scenarios"][0]["phases"][1]["seconds"] *= scale
        (tmp_path / "drill-report" / name).mkdir(parents=True)
        (tmp_path / "drill-report" / name / "report.json").write_text(json.dumps(report))
    done = run(tmp_path, BACKUP_ENGINE_MEDIA_PATHS="/srv/uploads",
               BACKUP_ENGINE_REDIS_URL="redis://:secret@cache:6379/0")  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "drill-report/20261129T000000Z/report.json" in text  # the newest report
    assert "`backup-engine pg restore latest --pgdata /var/lib/postgresql/15/main` | 1 min" in text
    assert "| 4. Verify the data |" in text and "| 30.0 s |" in text
    assert "| RTO | 4 h 00 min | 2 min 05 s (Restore the latest" in text
    assert "| RPO | 15 min 00 s | not drilled yet |" in text
    assert "media restore latest --to /srv/uploads.restored" in text
    assert "secret" not in text and "redis://***@cache:6379/0" in text
    html = run(tmp_path, "--format", "html", "-o", str(tmp_path / "runbook.html"))
    assert html.returncode == 0
    page = (tmp_path / "runbook.html").read_text()
    assert page.startswith("<!doctype html>") and "<code>backup-engine pg list</code>" in page


def test_without_a_report_the_steps_say_not_drilled_yet(tmp_path: Path) -> None:
    done = run(tmp_path, "--report", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "no drill report found yet" in done.stdout and "not drilled yet" in done.stdout
    never = run(tmp_path)  # a machine that has not drilled: no drill-report/ at all
    assert never.returncode == 0, never.stderr
    assert "no drill report found yet" in never.stdout
