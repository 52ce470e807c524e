"""What a drill run proves, recorded as it runs: measurements against targets, checklist
results with their actual values, the backups restored, and where and with what it ran.

Steps append to the `ScenarioRecord` of the scenario they run in; the pytest plugin fills in
names, timings and outcomes, and the report writers turn the `DrillRun` into report.json,
report.html and the rest of the evidence.
"""

from __future__ import annotations

import platform
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from backup_engine import __version__
from backup_engine.drill.controls import ControlMap, load_controls
from backup_engine.durations import format_duration
from backup_engine.urls import redact

REPORT_SCHEMA_VERSION = 3  # 2: provenance per scenario, controls per run; 3: result, exit code
DATA_KINDS = ("synthetic", "existing", "attached", "none")
# What `backup-engine drill` exits with for each result: a skipped scenario is proof missing,
# never a pass, so it has a code of its own (unless the operator accepts skips).
RESULT_EXIT_CODES = {"passed": 0, "failed": 1, "incomplete": 6}


def utc_now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Measurement:
    name: str  # "RTO", "RPO"
    seconds: float
    target_seconds: float

    @property
    def passed(self) -> bool:
        return self.seconds <= self.target_seconds

    def describe(self) -> str:
        verdict = "within" if self.passed else "OVER"
        return (
            f"{self.name} {format_duration(self.seconds)} "
            f"({verdict} target {format_duration(self.target_seconds)})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seconds": round(self.seconds, 3),
            "target_seconds": self.target_seconds,
            "passed": self.passed,
        }


@dataclass
class CheckResult:
    """One line of the restore checklist: what was expected, what was found."""

    name: str
    expected: str
    actual: str
    passed: bool


@dataclass(frozen=True)
class Phase:
    name: str  # "download, check and extract", "start the server and replay WAL", ...
    seconds: float


@dataclass(frozen=True)
class Runbook:
    """The plan's "Complete Database Loss" timeline, against which each restore is timed:
    the backup restored and the server recovered within 30 minutes, the data verified within
    45 (a scenario may set its own: `Given the runbook gives ... to restore and ...`)."""

    restored_seconds: float = 30 * 60
    verified_seconds: float = 45 * 60


@dataclass
class StepRecord:
    keyword: str
    text: str
    seconds: float
    status: str  # "passed" | "failed"


@dataclass
class ScenarioRecord:
    feature: str
    scenario: str
    nodeid: str
    tags: list[str] = field(default_factory=list)
    status: str = "running"
    started_at: str = field(default_factory=utc_now)
    finished_at: str | None = None
    steps: list[StepRecord] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)
    backups: list[dict[str, Any]] = field(default_factory=list)
    phases: list[Phase] = field(default_factory=list)
    runbook: Runbook = field(default_factory=Runbook)
    error: str | None = None
    provenance: dict[str, Any] = field(
        default_factory=lambda: {"repository": None, "data": "none", "selection": None,
                                 "backups": []}
    )  # fmt: skip

    def source(self, repository: str | None, *, data: str, selection: str | None = None) -> None:
        """Where this scenario's data came from: `synthetic` (seeded by the drill itself),
        `existing` (a backup that was already in the repository), or `attached` (a server
        someone else restored). The repository URL never carries credentials."""
        assert data in DATA_KINDS
        self.provenance.update(
            repository=redact(repository) if repository else None, data=data, selection=selection
        )

    def measure(self, name: str, seconds: float, target_seconds: float) -> Measurement:
        """Record a figure against its target (steps use `expect_within`, which also asserts)."""
        measurement = Measurement(name, seconds, target_seconds)
        self.measurements.append(measurement)
        return measurement

    def record_check(self, name: str, expected: object, actual: object, passed: bool) -> None:
        """Record a checklist result without asserting (steps use `expect`/`expect_all`)."""
        self.checks.append(CheckResult(name, str(expected), str(actual), bool(passed)))

    def expect(
        self, name: str, expected: object, actual: object, passed: bool | None = None
    ) -> None:
        """A comparison a Then-step makes, recorded with both values whatever the outcome,
        then asserted (equality unless `passed` says otherwise). The one way a step proves
        something: what it records and what it asserts cannot disagree."""
        ok = expected == actual if passed is None else bool(passed)
        self.record_check(name, expected, actual, ok)
        if not ok:
            raise AssertionError(f"{name}: expected {expected}, found {actual}")

    def expect_all(self, checks: Iterable[tuple[str, object, object, bool]]) -> None:
        """Several comparisons (name, expected, actual, passed), every one recorded, then one
        failure naming all that did not hold: the evidence shows each row, not the first."""
        failed = []
        for name, expected, actual, passed in checks:
            self.record_check(name, expected, actual, passed)
            if not passed:
                failed.append(f"{name}: expected {expected}, found {actual}")
        if failed:
            raise AssertionError("; ".join(failed))

    def expect_within(self, name: str, seconds: float, target_seconds: float) -> Measurement:
        """A measured figure (RTO, RPO) recorded against its target, then asserted."""
        measurement = self.measure(name, seconds, target_seconds)
        if not measurement.passed:
            raise AssertionError(measurement.describe())
        return measurement

    @property
    def proved(self) -> bool:
        """Whether anything was checked: a scenario that recorded no check proved nothing."""
        return bool(self.checks or self.measurements)

    def phase(self, name: str, seconds: float) -> None:
        """One timed step of a restore, in order (the runbook's steps)."""
        self.phases.append(Phase(name, seconds))

    def _phases(self) -> list[dict[str, Any]]:
        total, out = 0.0, []
        for phase in self.phases:
            total += phase.seconds
            out.append({"name": phase.name, "seconds": round(phase.seconds, 3),
                        "cumulative_seconds": round(total, 3)})  # fmt: skip
        return out

    def _milestones(self) -> list[dict[str, Any]]:
        """Cumulative times against the runbook: restored (every phase), then verified (plus
        the Then-steps that checked the data)."""
        if not self.phases:
            return []
        restored = sum(p.seconds for p in self.phases)
        checking, checked = False, 0.0
        for step in self.steps:
            checking = step.keyword == "Then" or (checking and step.keyword in ("And", "But"))
            checked += step.seconds if checking else 0.0
        rows = [("backup restored, server recovered", restored, self.runbook.restored_seconds),
                ("data verified", restored + checked, self.runbook.verified_seconds)]  # fmt: skip
        return [
            {"milestone": name, "seconds": round(actual, 3), "target_seconds": target,
             "passed": actual <= target}
            for name, actual, target in rows
        ]  # fmt: skip

    def used_backup(
        self, backup_id: str, objects: dict[str, str], details: dict[str, Any] | None = None
    ) -> None:
        """Record which backup a scenario restored, with the sha256 of each object, and what
        is known about it (system identifier, times, age, size, the WAL replayed)."""
        self.backups.append({"backup_id": backup_id, "sha256": objects})
        self.provenance["backups"].append({"backup_id": backup_id, **(details or {})})

    def to_dict(self) -> dict[str, Any]:
        seconds = sum(step.seconds for step in self.steps)
        return {
            "feature": self.feature,
            "scenario": self.scenario,
            "nodeid": self.nodeid,
            "tags": self.tags,
            "status": self.status,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_seconds": round(seconds, 3),
            "steps": [
                {"keyword": s.keyword, "text": s.text, "seconds": round(s.seconds, 3),
                 "status": s.status}
                for s in self.steps
            ],
            "measurements": [m.to_dict() for m in self.measurements],
            "checks": [c.__dict__ for c in self.checks],
            "backups": self.backups,
            "phases": self._phases(),
            "runbook": self._milestones(),
            "provenance": self.provenance,
            "error": self.error,
        }  # fmt: skip


@dataclass
class DrillRun:
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started_at: str = field(default_factory=utc_now)
    finished_at: str | None = None
    scenarios: list[ScenarioRecord] = field(default_factory=list)
    versions: dict[str, str | None] = field(default_factory=dict)
    git_sha: str | None = None
    controls: ControlMap = field(default_factory=lambda: load_controls(None))
    allow_skips: bool = False  # the operator accepts skipped scenarios (--allow-skips)
    reaped: list[str] = field(default_factory=list)  # what killed drills had left, removed

    @property
    def result(self) -> str:
        """passed, failed or incomplete (scenarios skipped): one verdict for the headline,
        the summary line, the webhook, the metrics and the exit code alike."""
        statuses = {s.status for s in self.scenarios}
        if not statuses or statuses - {"passed", "skipped"}:
            return "failed"
        if "skipped" in statuses and not self.allow_skips:
            return "incomplete"
        return "passed"

    @property
    def passed(self) -> bool:
        return self.result == "passed"

    @property
    def exit_code(self) -> int:
        return RESULT_EXIT_CODES[self.result]

    def verdict(self) -> str:
        """The one summary line: "Restore drill PASSED: 12 of 12 scenarios passed"."""
        counts = {k: sum(s.status == k for s in self.scenarios) for k in ("passed", "skipped")}
        line = f"Restore drill {self.result.upper()}: {counts['passed']} of "
        line += f"{len(self.scenarios)} scenarios passed"
        if counts["skipped"]:
            accepted = " (accepted: --allow-skips)" if self.allow_skips else ""
            line += f", {counts['skipped']} skipped{accepted}"
        return f"{line} (exit {self.exit_code})"

    def to_dict(self) -> dict[str, Any]:
        counts = {
            status: sum(s.status == status for s in self.scenarios)
            for status in ("passed", "failed", "skipped")
        }
        scenarios = [s.to_dict() for s in self.scenarios]
        return {
            "schema_version": REPORT_SCHEMA_VERSION,
            "run_id": self.run_id,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "host": socket.gethostname(),
            "tool": {"name": "restore-drill", "version": __version__, "git_sha": self.git_sha},
            "versions": {"python": platform.python_version(), **self.versions},
            "passed": self.passed,
            "result": self.result,
            "skips_allowed": self.allow_skips,
            "exit_code": self.exit_code,
            "summary": {"scenarios": len(self.scenarios), **counts},
            "scenarios": scenarios,
            "controls": self.controls.summarize(scenarios),
            "reaped": self.reaped,
        }
