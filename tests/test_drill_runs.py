"""Each drill run's evidence in a directory of its own: never written over, never touched by a
drill that could not start, `latest` switched once sealed, old runs pruned; and a scenario that
records no check cannot pass. The command runs a feature that needs no server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backup_engine.drill.runs import LATEST, new_run, point_latest, prune, run_time
from backup_engine.errors import UsageError

NOTHING_CHECKED = """
Feature: Nothing checked
  Scenario: A scenario that checks nothing
    Given the runbook gives 30 minutes to restore and 45 minutes to verify the data
"""


def drill(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKUP_ENGINE", "DRILL_"))}
    return subprocess.run(
        [sys.executable, "-m", "backup_engine", "drill", *args],
        capture_output=True, text=True, cwd=cwd, env=env, check=False, timeout=300,
    )  # fmt: skip


# The command as a plain `pip install restore-drill` has it: no drill extra (pytest, pytest-bdd,
# moto) and no jsonschema.
PLAIN_INSTALL = """
import importlib.util, sys
ABSENT = {"pytest", "_pytest", "pytest_bdd", "jsonschema", "moto"}
class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ABSENT:
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, NotInstalled())
look_up = importlib.util.find_spec
def find_spec(name, *args):
    return None if name.split(".")[0] in ABSENT else look_up(name, *args)
importlib.util.find_spec = find_spec
sys.argv[0] = "backup-engine"
from backup_engine.entry import main
main()
"""


def plain(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKUP_ENGINE", "DRILL_"))}
    return subprocess.run([sys.executable, "-c", PLAIN_INSTALL, *args], capture_output=True,
                          text=True, cwd=cwd, env=env, check=False, timeout=60)  # fmt: skip


def runs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if run_time(p) is not None)


def test_runs_keep_their_own_evidence_and_a_scenario_without_a_check_fails(tmp_path: Path) -> None:
    features = tmp_path / "features"
    features.mkdir()
    (features / "nothing.feature").write_text(NOTHING_CHECKED)
    root = tmp_path / "evidence"
    common = ("--features", str(features), "--report-root", str(root))

    first = drill(*common, cwd=tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "no check was recorded" in first.stdout
    assert "Restore drill FAILED: 0 of 1 scenarios passed (exit 1)" in first.stdout
    second = drill(*common, cwd=tmp_path)
    assert second.returncode == 1, second.stdout + second.stderr
    made = runs(root)
    assert len(made) == 2, list(root.iterdir())
    assert (root / LATEST).resolve() == made[-1]  # names sort by time: the newest
    report = json.loads((made[-1] / "report.json").read_text())
    assert report["result"] == "failed" and report["exit_code"] == 1
    assert report["run_id"][:8] == made[-1].name[-8:]
    assert "no check was recorded" in report["scenarios"][0]["error"]

    # A drill that cannot start writes nothing anywhere, and leaves the sealed runs as they are.
    broken = drill(*common, "-k", "(", cwd=tmp_path)
    assert broken.returncode == 2, broken.stdout + broken.stderr
    assert runs(root) == made
    # A named directory that holds a run is never written over.
    over = drill("--features", str(features), "--report-dir", str(made[0]), cwd=tmp_path)
    assert over.returncode == 2 and "already holds another run's evidence" in over.stderr
    for run in made:  # an auditor's plain install checks the evidence
        verified = plain("drill", "verify-report", str(run), cwd=tmp_path)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "schema valid" in verified.stdout

    shown = plain("drill", "history", "--report-root", str(root), "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    history = json.loads(shown.stdout)
    assert len(history["runs"]) == 2  # latest is a link to one of them, not a third run
    needs = plain("drill", "--features", str(features), cwd=tmp_path)
    assert needs.returncode == 2 and "pip install 'restore-drill[drill]'" in needs.stderr


def test_two_drills_started_at_once_each_seal_their_own_run(tmp_path: Path) -> None:
    features = tmp_path / "features"
    features.mkdir()
    (features / "nothing.feature").write_text(NOTHING_CHECKED)
    root = tmp_path / "evidence"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKUP_ENGINE", "DRILL_"))}
    argv = [sys.executable, "-m", "backup_engine", "drill", "--features", str(features),
            "--report-root", str(root)]  # fmt: skip
    both = [subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL) for _ in range(2)]  # fmt: skip
    assert [p.wait(timeout=300) for p in both] == [1, 1]
    made = runs(root)
    assert len(made) == 2
    run_ids = {json.loads((run / "report.json").read_text())["run_id"] for run in made}
    assert len(run_ids) == 2
    for run in made:
        assert drill("verify-report", str(run), cwd=tmp_path).returncode == 0
    assert (root / LATEST).resolve() in made


def test_list_names_the_scenarios_a_drill_would_run(tmp_path: Path) -> None:
    listed = drill("list", "--tags", "incremental", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    scenarios = json.loads(listed.stdout)["scenarios"]
    assert len(scenarios) == 8 and all("incremental" in s["tags"] for s in scenarios)
    assert scenarios[0]["file"].endswith("postgres_incremental.feature")
    text = drill("list", "-k", "tablespace and not incremental", cwd=tmp_path)
    assert text.returncode == 0 and text.stdout.rstrip().endswith("5 scenarios"), text.stdout
    bad = drill("list", "--tags", "no_such_tag", cwd=tmp_path)
    assert bad.returncode == 2 and "Unknown marker" in bad.stderr


def test_prune_removes_only_old_runs_and_never_the_latest(tmp_path: Path) -> None:
    now = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
    old = new_run(tmp_path, None, now=now - timedelta(days=100))
    recent = new_run(tmp_path, None, now=now - timedelta(days=3))
    (old.path / "SHA256SUMS").write_text("")
    assert point_latest(old) is None  # the only sealed run: latest stays on it
    stranger = tmp_path / "20200101T000000Z-notarun"  # not a run's name: never ours to delete
    stranger.mkdir()
    assert prune(tmp_path, 30, now) == []
    (recent.path / "SHA256SUMS").write_text("")
    assert point_latest(recent) is None
    assert prune(tmp_path, 30, now) == [old.path]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [recent.path.name, stranger.name, LATEST]
    )
    assert prune(tmp_path, 0, now + timedelta(days=999)) == []  # 0 keeps every run


def test_latest_is_not_switched_to_an_unsealed_run_nor_over_a_directory(tmp_path: Path) -> None:
    run = new_run(tmp_path, None)
    assert point_latest(run) is None and not (tmp_path / LATEST).exists()  # not sealed yet
    (run.path / "SHA256SUMS").write_text("")
    (tmp_path / LATEST).mkdir()  # the evidence of an older layout, left as it is
    assert "not a link" in str(point_latest(run))


def test_a_named_report_directory_must_be_new_or_empty(tmp_path: Path) -> None:
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "report.json").write_text("{}")
    with pytest.raises(UsageError, match="already holds"):
        new_run(None, tmp_path / "used")
    empty = new_run(None, tmp_path / "empty")
    (empty.path / "junit.xml").write_text("")
    empty.discard()
    assert not empty.path.exists()
