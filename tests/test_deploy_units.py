"""The systemd units under deploy/systemd/: valid for systemd, and every command they run is
one the CLI accepts (an option renamed in the CLI would otherwise break a timer silently)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
UNITS = ROOT / "deploy" / "systemd"
ALERTS = ROOT / "monitoring" / "alerts.yml"
README = ROOT / "README.md"
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"  # Debian's prometheus-node-exporter reads it
INSTALLED = "/usr/local/bin/backup-engine"


def _commands() -> list[tuple[str, list[str]]]:
    found = []
    for unit in sorted(UNITS.glob("*.service")):
        for line in unit.read_text().splitlines():
            if line.startswith(("ExecStart=", "ExecStartPost=")):
                argv = shlex.split(line.split("=", 1)[1])
                assert argv[0] == INSTALLED, f"{unit.name}: {argv[0]}"
                found.append((unit.name, argv[1:]))
    return found


def test_every_timer_starts_a_service_and_every_service_runs_the_tool() -> None:
    services = {u.stem for u in UNITS.glob("*.service")}
    timers = {u.stem for u in UNITS.glob("*.timer")}
    assert timers == {"backup-engine-run-all", "backup-engine-expire", "backup-engine-drill",
                      "backup-engine-archiver-metrics"}  # fmt: skip
    assert timers < services and "backup-engine-wal-stream" in services
    for always in ("backup-engine-wal-stream", "backup-engine-fleet-worker"):
        assert "Restart=always" in (UNITS / f"{always}.service").read_text()
    # Each night's evidence in a directory of its own, kept in the repository too.
    drill = (UNITS / "backup-engine-drill.service").read_text()
    assert "--report-root /var/lib/backup-engine/drill-report" in drill
    assert "--report-dir" not in drill
    assert "--keep-in-repository" in drill and "StateDirectory=backup-engine" in drill
    # One textfile directory everywhere: the units, the rules' comment and the documents.
    textfiles = {
        path
        for unit in UNITS.glob("*.service")
        for path in re.findall(r"(/\S+)/restore_drill\w*\.prom", unit.read_text())
    }
    assert textfiles == {TEXTFILE_DIR}, textfiles
    for doc in (ALERTS, README, *sorted((ROOT / "docs").glob("*.md"))):
        found = set(re.findall(r"(/var/lib/\S+?)/?restore_drill\w*\.prom", doc.read_text()))
        found |= set(re.findall(r"/var/lib/node_exporter\S*", doc.read_text()))
        assert found <= {TEXTFILE_DIR}, (doc.name, found)
    assert {name for name, _ in _commands()} == {f"{s}.service" for s in services}


@pytest.mark.parametrize(("unit", "argv"), _commands(), ids=lambda v: str(v)[:60])
def test_each_command_line_is_accepted_by_the_cli(unit: str, argv: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "backup_engine", *argv, "--help"],
                          capture_output=True, text=True, check=False, timeout=60)  # fmt: skip
    assert done.returncode == 0, f"{unit}: {done.stderr}"


def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing (Debian package systemd)"
    tool = Path(sys.executable).parent / "backup-engine"
    for unit in UNITS.iterdir():  # the same units, pointing at this checkout's tool
        (tmp_path / unit.name).write_text(unit.read_text().replace(INSTALLED, str(tool)))
    env = {**os.environ, "SYSTEMD_LOG_LEVEL": "warning"}
    done = subprocess.run([analyze, "verify", *sorted(str(p) for p in tmp_path.iterdir())],
                          capture_output=True, text=True, check=False, env=env)  # fmt: skip
    problems = [line for line in (done.stdout + done.stderr).splitlines()
                if "backup-engine" in line]  # fmt: skip
    assert done.returncode == 0 and not problems, done.stdout + done.stderr
