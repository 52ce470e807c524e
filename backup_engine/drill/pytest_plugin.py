"""pytest plugin that turns pytest-bdd scenarios into drill evidence.

Loaded from the project's conftest (so `pytest features/` and `backup-engine drill` behave the
same). It records every scenario's steps and outcome, gives steps a `drill_record` fixture to
add measurements (RTO, RPO) and checklist results to, prints a pass/fail summary with the
measured figures, and writes the evidence into the report directory: report.json,
report.html, then SHA256SUMS (and its HMAC when DRILL_SIGNING_KEY is set) over everything
there, junit.xml and cucumber.json included when they were asked for.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Generator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from backup_engine.drill.controls import load_controls
from backup_engine.drill.evidence import DrillRun, ScenarioRecord, StepRecord, utc_now
from backup_engine.drill.metrics import write_drill_metrics
from backup_engine.drill.report import REPORT_HTML, write_json
from backup_engine.drill.report.html import render_html
from backup_engine.drill.report.signing import SIGNING_KEY_FILE_ENV, load_private_key
from backup_engine.drill.report.sums import SIGNING_KEY_ENV, write_sums
from backup_engine.drill.runs import RUN_ID, RUN_ID_ENV
from backup_engine.drill.tags import TAGS
from backup_engine.drill.versions import git_sha, server_versions
from backup_engine.drill.webhook import WEBHOOK_ENV, post_summary, summary_message
from backup_engine.servers.reaper import reap

RECORD = pytest.StashKey[ScenarioRecord]()
FEATURE_FILE = pytest.StashKey[str]()  # the running scenario's .feature file
STEP_STARTED = pytest.StashKey[float]()
RUN = pytest.StashKey[DrillRun]()
REPORT_DIR = pytest.StashKey[Path]()
REPORT_DIR_ENV = "DRILL_REPORT_DIR"
METRICS_ENV = "DRILL_METRICS_FILE"
CONTROLS_ENV = "DRILL_CONTROLS_FILE"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("restore drill")
    group.addoption(
        "--drill-report-dir",
        default=os.environ.get(REPORT_DIR_ENV),
        help="where the drill evidence goes [default: ./drill-report/<UTC time>/]",
    )
    group.addoption(
        "--drill-progress", action="store_true", help="print a line as each scenario starts/ends"
    )
    group.addoption(
        "--drill-webhook",
        default=os.environ.get(WEBHOOK_ENV),
        help="POST a Slack-compatible summary here [$DRILL_WEBHOOK_URL]",
    )
    group.addoption(
        "--drill-allow-skips",
        action="store_true",
        help="skipped scenarios do not make the drill incomplete (the evidence says so)",
    )
    group.addoption(
        "--drill-metrics-file",
        default=os.environ.get(METRICS_ENV),
        help="write Prometheus textfile metrics here [$DRILL_METRICS_FILE]",
    )


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # The default SIGTERM action kills the process without unwinding, leaving throwaway servers
    # running; exiting normally runs every fixture's teardown (CI timeouts send SIGTERM).
    raise SystemExit(128 + signum)


_CONFIG: list[pytest.Config] = []  # the running session's config, for the tag hook below


def pytest_configure(config: pytest.Config) -> None:
    for tag, meaning in TAGS.items():
        config.addinivalue_line("markers", f"{tag}: {meaning}")
    _CONFIG[:] = [config]
    controls = os.environ.get(CONTROLS_ENV)
    run_id = os.environ.get(RUN_ID_ENV, "")
    config.stash[RUN] = DrillRun(
        run_id=run_id if RUN_ID.match(run_id) else uuid.uuid4().hex,
        controls=load_controls(Path(controls) if controls else None),
        allow_skips=bool(config.getoption("--drill-allow-skips")),
    )
    configured = config.getoption("--drill-report-dir")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    config.stash[REPORT_DIR] = Path(configured) if configured else Path("drill-report") / stamp
    if configured:  # other plugins (junit, cucumber) may write into it before we do
        Path(configured).mkdir(parents=True, exist_ok=True)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Before any server starts: stop and remove what killed drills left behind (their
    servers, containers and scratch areas), and say so in this run's evidence."""
    if getattr(session.config.option, "collectonly", False):
        return  # drill list: looks, changes nothing
    run = session.config.stash[RUN]
    for reaped in reap():
        run.reaped.append(reaped.describe())
        _say(session.config, f"cleanup: {reaped.describe()}")


@pytest.hookimpl(tryfirst=True)
def pytest_bdd_apply_tag(tag: str, function: Any) -> None:
    """Register a feature's own tag before pytest-bdd applies it: users' tags never warn."""
    if _CONFIG and tag not in TAGS:
        _CONFIG[0].addinivalue_line("markers", f"{tag}: a tag of a user's feature")


def pytest_bdd_before_scenario(request: pytest.FixtureRequest, feature: Any, scenario: Any) -> None:
    request.node.stash[FEATURE_FILE] = str(feature.filename)
    record = ScenarioRecord(
        feature=feature.name,
        scenario=scenario.name,
        nodeid=request.node.nodeid,
        tags=sorted(set(feature.tags) | set(scenario.tags)),
    )
    request.node.stash[RECORD] = record
    request.config.stash[RUN].scenarios.append(record)
    if request.config.getoption("--drill-progress"):
        _say(request.config, f"... {feature.name} / {scenario.name}")


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(
    report: pytest.TestReport, config: pytest.Config
) -> tuple[str, str, str] | None:
    """With --drill-progress our own lines say it all: no progress dots in between."""
    if config.getoption("--drill-progress") and report.when == "call":
        return report.outcome, "", report.outcome.upper()
    return None


def _say(config: pytest.Config, line: str) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)


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
    if report.when == "call" and report.passed and not record.proved:
        # A scenario that checked nothing proved nothing: it cannot pass.
        report.outcome = "failed"
        report.longrepr = NO_CHECK
    if report.when == "call" or (report.when == "setup" and not report.passed):
        record.status = report.outcome
        record.finished_at = utc_now()
        if report.failed and record.error is None:
            record.error = _first_error_line(report.longreprtext)
        if report.skipped:
            record.error = _skip_reason(report)
        if item.config.getoption("--drill-progress"):
            figures = "; ".join(m.describe() for m in record.measurements)
            _say(item.config, f"{record.status.upper():7} {record.scenario}  {figures}".rstrip())


NO_CHECK = (
    "E   no check was recorded: a scenario must prove something (a Then step that compares "
    "data through drill_record.expect)"
)


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return "skipped: " + reason.removeprefix("Skipped: ")


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


def report_dir(config: pytest.Config) -> Path:
    return config.stash[REPORT_DIR]


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    run = config.stash[RUN]
    if not run.scenarios:
        return
    run.finished_at = utc_now()
    run.versions = server_versions()
    run.git_sha = git_sha(Path(__file__).resolve().parent)
    report = run.to_dict()
    directory = report_dir(config)
    write_json(report, directory)
    (directory / REPORT_HTML).write_text(render_html(report))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    run = config.stash[RUN]
    if not run.scenarios:
        return
    tr = terminalreporter
    tr.section("restore drill summary")
    for scenario in run.scenarios:
        figures = "; ".join(m.describe() for m in scenario.measurements)
        mark = {"passed": "PASS", "skipped": "SKIP"}.get(scenario.status, "FAIL")
        tail = f"  {figures}" if figures else ""
        tr.write_line(f"{mark}  {scenario.feature} / {scenario.scenario}{tail}")
        if scenario.error and scenario.status != "passed":
            tr.write_line(f"      {scenario.error}")
    tr.write_line(f"{run.verdict()}; evidence: {report_dir(config)}")


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    # After every other plugin wrote its files (junit.xml, cucumber.json): seal the directory.
    if RUN not in config.stash or not config.stash[RUN].scenarios:
        return
    directory = report_dir(config)
    if directory.is_dir():
        key_file = os.environ.get(SIGNING_KEY_FILE_ENV)
        private_key = load_private_key(Path(key_file)) if key_file else None
        write_sums(directory, os.environ.get(SIGNING_KEY_ENV) or None, private_key)
    _notify(config)


def _notify(config: pytest.Config) -> None:
    """Metrics and webhook: reported when they fail, never changing the drill's result."""
    run = config.stash[RUN]
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    problems = []
    metrics_file = config.getoption("--drill-metrics-file")
    if metrics_file:
        try:
            write_drill_metrics(Path(metrics_file), run)
        except OSError as exc:
            problems.append(f"metrics not written to {metrics_file}: {exc.strerror}")
    webhook = config.getoption("--drill-webhook")
    if webhook:
        problem = post_summary(webhook, summary_message(run, str(report_dir(config))))
        if problem:
            problems.append(problem)
    for problem in problems:
        if reporter is not None:
            reporter.write_line(f"warning: {problem} (the drill result stands)")
