"""pytest plugin that turns pytest-bdd scenarios into drill evidence and a summary.

Loaded from the project's conftest. It records every scenario's steps and outcome, gives steps a
`drill_record` fixture to add measurements (RTO, RPO) to, prints a pass/fail summary with the
measured figures at the end, and writes the run to `<report dir>/drill-summary.json`.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Generator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from backup_engine.drill.evidence import DrillRun, ScenarioRecord, StepRecord, utc_now

RECORD = pytest.StashKey[ScenarioRecord]()
STEP_STARTED = pytest.StashKey[float]()
RUN = pytest.StashKey[DrillRun]()
REPORT_DIR_ENV = "DRILL_REPORT_DIR"


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # The default SIGTERM action kills the process without unwinding, leaving throwaway servers
    # running; exiting normally runs every fixture's teardown (CI timeouts send SIGTERM).
    raise SystemExit(128 + signum)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[RUN] = DrillRun()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)


def pytest_bdd_before_scenario(request: pytest.FixtureRequest, feature: Any, scenario: Any) -> None:
    record = ScenarioRecord(
        feature=feature.name,
        scenario=scenario.name,
        nodeid=request.node.nodeid,
        tags=sorted(set(feature.tags) | set(scenario.tags)),
    )
    request.node.stash[RECORD] = record
    request.config.stash[RUN].scenarios.append(record)


def pytest_bdd_before_step(request: pytest.FixtureRequest) -> None:
    request.node.stash[STEP_STARTED] = time.monotonic()


def _step_done(request: pytest.FixtureRequest, step: Any, status: str) -> None:
    record = request.node.stash.get(RECORD, None)
    if record is None:
        return
    started = request.node.stash.get(STEP_STARTED, time.monotonic())
    record.steps.append(StepRecord(step.keyword, step.name, time.monotonic() - started, status))


def pytest_bdd_after_step(request: pytest.FixtureRequest, step: Any) -> None:
    _step_done(request, step, "passed")


def pytest_bdd_step_error(request: pytest.FixtureRequest, step: Any, exception: Exception) -> None:
    _step_done(request, step, "failed")
    record = request.node.stash.get(RECORD, None)
    if record is not None:
        record.error = f"{step.keyword} {step.name}: {type(exception).__name__}: {exception}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    record = item.stash.get(RECORD, None)
    if record is None:
        return
    if report.when == "call" or (report.when == "setup" and report.failed):
        record.status = report.outcome
        record.finished_at = utc_now()
        if report.failed and record.error is None:
            record.error = _first_error_line(report.longreprtext)


def _first_error_line(text: str) -> str:
    """pytest marks the exception lines with "E   "; the first one says what failed."""
    for line in text.splitlines():
        if line.startswith("E "):
            return line[1:].strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "failed"


@pytest.fixture
def drill_record(request: pytest.FixtureRequest) -> ScenarioRecord:
    """The evidence record of the running scenario."""
    record = request.node.stash.get(RECORD, None)
    if record is None:
        raise RuntimeError("drill_record is only available inside a Gherkin scenario")
    return record


def _report_dir(config: pytest.Config) -> Path:
    configured = os.environ.get(REPORT_DIR_ENV)
    if configured:
        return Path(configured)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path(config.rootpath) / "drill-report" / stamp


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    run = config.stash[RUN]
    if not run.scenarios:
        return
    run.finished_at = utc_now()
    path = _report_dir(config) / "drill-summary.json"
    run.write(path)
    tr = terminalreporter
    tr.section("restore drill summary")
    for scenario in run.scenarios:
        figures = "; ".join(m.describe() for m in scenario.measurements)
        mark = "PASS" if scenario.status == "passed" else "FAIL"
        tail = f"  {figures}" if figures else ""
        tr.write_line(f"{mark}  {scenario.feature} / {scenario.scenario}{tail}")
        if scenario.error and scenario.status != "passed":
            tr.write_line(f"      {scenario.error}")
    passed = sum(s.status == "passed" for s in run.scenarios)
    tr.write_line(f"{passed} of {len(run.scenarios)} scenarios passed; evidence: {path}")
