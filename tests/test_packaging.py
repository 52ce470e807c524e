"""The drill installs like a product: a wheel in a fresh virtualenv outside the checkout runs the
shipped scenarios and a user's own, and the engine alone never needs the drill's parts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parent.parent
USER_FEATURE = """\
@postgres
Feature: Our billing database survives losing its server
  Scenario: The last backup comes back with every invoice
    Given an empty backup repository
    And a running PostgreSQL server with the shop schema and 25 users
    And the row count and content checksum of every table are recorded
    When a full backup is taken
    And the server is destroyed
    And the latest backup is restored into a new server
    Then every table has the same row count and content checksum as before the loss
"""


def test_every_package_of_the_tree_is_shipped() -> None:
    declared = set(tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ])  # fmt: skip
    found = {
        ".".join(p.parent.relative_to(CHECKOUT).parts)
        for p in (CHECKOUT / "backup_engine").rglob("__init__.py")
    }
    assert found | {"backup_engine.drill.scenarios", "restore_drill_steps"} == declared


def test_the_drill_finds_its_steps_by_entry_point_never_by_import() -> None:
    """No module of backup_engine/ imports the step library (the drill included): it is found
    through the `restore_drill.steps` entry point, like any other project's steps."""
    project = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["project"]
    declared = project["entry-points"]["restore_drill.steps"]
    assert declared == {"restore-drill": "restore_drill_steps"}
    offenders = [
        f"{path.relative_to(CHECKOUT)}: {line.strip()}"
        for path in (CHECKOUT / "backup_engine").rglob("*.py")
        for line in path.read_text().splitlines()
        if line.split()[:1] in (["import"], ["from"])
        and line.split()[1].startswith(("steps", "restore_drill_steps"))
    ]
    assert offenders == []


def test_the_engine_never_imports_the_drill() -> None:
    """Everything in backup_engine/ but drill/ works without pytest, moto or the step library."""
    offenders = []
    for path in (CHECKOUT / "backup_engine").rglob("*.py"):
        if "drill" in path.relative_to(CHECKOUT / "backup_engine").parts:
            continue
        for line in path.read_text().splitlines():
            words = line.split()
            if (
                words[:1] in (["import"], ["from"])
                and len(words) > 1
                and (words[1].startswith(("backup_engine.drill", "steps", "pytest", "moto")))
            ):
                offenders.append(f"{path.relative_to(CHECKOUT)}: {line.strip()}")
    assert offenders == []


@pytest.fixture(scope="module")
def installed() -> Iterator[Path]:
    """A wheel built from this checkout, installed with the drill extra into a fresh virtualenv
    that the `postgres` OS user can run (archive and restore commands call it)."""
    root = Path(tempfile.mkdtemp(prefix="restore-drill-wheel-"))
    root.chmod(0o755)
    try:
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", str(CHECKOUT), "--no-deps", "-q",
             "-w", str(root / "dist")],
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip
        wheel = next((root / "dist").glob("restore_drill-*.whl"))
        python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
        subprocess.run([python, "-m", "venv", str(root / "venv")], check=True, timeout=300)
        subprocess.run(
            [str(root / "venv/bin/pip"), "install", "-q", "--disable-pip-version-check",
             f"{wheel}[drill]"],
            check=True, capture_output=True, timeout=900,
        )  # fmt: skip
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKUP_ENGINE", "DRILL_"))}
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [str(root / "venv/bin/backup-engine"), *args],
        capture_output=True, text=True, cwd=root, env=env, check=False, timeout=900,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.postgres
def test_an_installed_wheel_runs_the_shipped_drills_and_a_users_own(installed: Path) -> None:
    checked = _run(installed, "drill", "--check")
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-2000:]
    assert "every step has a definition" in checked.stdout + checked.stderr
    site = next((installed / "venv" / "lib").glob("python3*/site-packages"))
    assert (site / "restore_drill_steps").is_dir() and not (site / "steps").exists()
    shipped = _run(installed, "drill", "--tags", "full_restore", "-k", "newest",
                   "--report-dir", "evidence")  # fmt: skip
    assert shipped.returncode == 0, shipped.stdout[-3000:] + shipped.stderr[-2000:]
    assert "1 of 1 scenarios passed" in shipped.stdout
    assert "PytestUnknownMarkWarning" not in shipped.stdout + shipped.stderr

    mine = installed / "our-scenarios"
    mine.mkdir()
    (mine / "billing.feature").write_text(USER_FEATURE.replace("@postgres", "@postgres @billing"))
    own = _run(installed, "drill", "--features", str(mine), "--report-dir", "own-evidence")
    assert own.returncode == 0, own.stdout[-3000:] + own.stderr[-2000:]
    assert "1 of 1 scenarios passed" in own.stdout
    assert "Warning" not in own.stdout + own.stderr  # the user's own @billing tag included

    metrics = _run(installed, "--repo", f"file://{installed}", "metrics", "--textfile", "m.prom")
    assert metrics.returncode == 0, metrics.stderr  # the engine's metrics need no drill extra

    subprocess.run([str(installed / "venv/bin/pip"), "uninstall", "-y", "-q", "pytest-bdd"],
                   check=True, capture_output=True)  # fmt: skip
    missing = _run(installed, "drill")
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        "backup-engine: error: backup-engine drill needs pytest_bdd, which comes with the drill "
        "extra (pip install 'restore-drill[drill]')"
    ]
