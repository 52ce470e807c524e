"""The application's own smoke tests against the restored copy: any command (a test suite, a
script, `docker run` of the application's image on the host network), with DATABASE_URL, PG*
and REDIS_URL pointing at the restored server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pytest_bdd import parsers, then

from backup_engine.drill.evidence import ScenarioRecord
from backup_engine.drill.pytest_plugin import FEATURE_FILE, report_dir
from backup_engine.drill.smoke import SmokeResult, run_smoke, target_environment
from backup_engine.durations import parse_duration

DEFAULT_TIMEOUT = "5 minutes"


def _environment(restored: Any) -> dict[str, str]:
    server = restored.server
    dsn = server.dsn() if hasattr(server, "dsn") else None
    return target_environment(dsn, getattr(server, "url", None))


def _keep_output(request: pytest.FixtureRequest, record: ScenarioRecord, result: SmokeResult
                 ) -> Path:  # fmt: skip
    """The whole output, in the evidence directory (sealed with the rest)."""
    directory = report_dir(request.config) / "smoke"
    directory.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", record.scenario.lower()).strip("-")[:60]
    path = directory / f"{slug}-{len(list(directory.glob(slug + '-*'))) + 1}.log"
    path.write_text(f"$ {result.command}\n{result.output}\n# {result.describe()}\n")
    return path


def _smoke(request: pytest.FixtureRequest, restored: Any, record: ScenarioRecord, command: str,
           timeout: str) -> None:  # fmt: skip
    feature = request.node.stash.get(FEATURE_FILE, None)
    cwd = Path(feature).parent if feature else Path.cwd()
    result = run_smoke(command, _environment(restored), cwd=cwd, timeout=parse_duration(timeout))
    kept = _keep_output(request, record, result)
    found = result.describe() if result.passed else f"{result.describe()}: {result.tail()}"
    record.expect(f"smoke test `{command}` (output: {kept.name})", "exit 0", found,
                  result.passed)  # fmt: skip


@then(parsers.re(r'the smoke test "(?P<command>.+)" passes against the restored copy$'))
def smoke_passes(
    request: pytest.FixtureRequest, restored: Any, drill_record: ScenarioRecord, command: str
) -> None:
    """Your application's own check, run from the feature file's directory with DATABASE_URL,
    PGHOST/PGPORT/PGUSER/PGDATABASE (and REDIS_URL for a restored Redis) set to the restored
    server; it must exit 0 within 5 minutes. Its output is kept in the evidence (smoke/)."""
    _smoke(request, restored, drill_record, command, DEFAULT_TIMEOUT)


@then(parsers.re(r'the smoke test "(?P<command>.+)" passes against the restored copy within '
                 r"(?P<timeout>.+)$"))  # fmt: skip
def smoke_passes_within(
    request: pytest.FixtureRequest, restored: Any, drill_record: ScenarioRecord, command: str,
    timeout: str,
) -> None:  # fmt: skip
    """The same, with its own time limit ("30 seconds", "10 minutes")."""
    _smoke(request, restored, drill_record, command, timeout)
