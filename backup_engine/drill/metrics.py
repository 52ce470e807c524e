"""Prometheus textfile metrics of the drill (for node_exporter's textfile collector): how the
last drill went and its RTO/RPO per scenario against targets. The backups' own freshness is the
engine's (`backup_engine.metrics`). monitoring/alerts.yml alerts on these names."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile
from prometheus_client.parser import text_string_to_metric_families

from backup_engine.drill.evidence import DrillRun
from backup_engine.drill.fleet.report import METRICS as FLEET_METRICS
from backup_engine.metrics import (
    ARCHIVE_OBJECTS,
    ARCHIVE_PROBLEMS,
    ARCHIVE_VERIFIED,
    ARCHIVER_METRICS,
    BACKUP_LAST,
    BACKUP_SIZE,
    REPOSITORY_BYTES,
    RUN_FAILED,
    RUN_LAST,
    WAL_LAST,
)

LAST_RUN = "restore_drill_last_run_timestamp_seconds"
LAST_SUCCESS = "restore_drill_last_success_timestamp_seconds"
PASSED = "restore_drill_passed"
EXIT_CODE = "restore_drill_exit_code"
SCENARIO_PASSED = "restore_drill_scenario_passed"
SCENARIO_SECONDS = "restore_drill_scenario_{measure}_seconds"
SCENARIO_TARGET = "restore_drill_scenario_{measure}_target_seconds"
ALL_METRICS = (
    LAST_RUN, LAST_SUCCESS, PASSED, EXIT_CODE, SCENARIO_PASSED,
    SCENARIO_SECONDS.format(measure="rto"), SCENARIO_TARGET.format(measure="rto"),
    SCENARIO_SECONDS.format(measure="rpo"), SCENARIO_TARGET.format(measure="rpo"),
    BACKUP_LAST, BACKUP_SIZE, WAL_LAST, REPOSITORY_BYTES, RUN_LAST, RUN_FAILED,
    *ARCHIVER_METRICS, ARCHIVE_VERIFIED, ARCHIVE_PROBLEMS, ARCHIVE_OBJECTS, *FLEET_METRICS,
)  # fmt: skip


def _previous_value(path: Path, name: str) -> float | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    return None


def write_drill_metrics(path: Path, run: DrillRun, *, now: float | None = None) -> None:
    """Rewrite the drill's textfile; a failed run keeps the previous success time."""
    now = time.time() if now is None else now
    registry = CollectorRegistry()
    Gauge(LAST_RUN, "When the last restore drill finished", registry=registry).set(now)
    last_success = now if run.passed else _previous_value(path, LAST_SUCCESS)
    success = Gauge(LAST_SUCCESS, "When a restore drill last passed", registry=registry)
    if last_success is not None:
        success.set(last_success)
    Gauge(PASSED, "1 if every scenario of the last drill passed", registry=registry).set(
        1 if run.passed else 0
    )
    Gauge(EXIT_CODE, "0 passed, 1 a restore failed, 6 incomplete (scenarios skipped)",
          registry=registry).set(run.exit_code)  # fmt: skip
    passed = Gauge(
        SCENARIO_PASSED, "1 if the scenario passed", ["feature", "scenario"], registry=registry
    )
    gauges: dict[str, Gauge] = {}
    for scenario in run.scenarios:
        passed.labels(scenario.feature, scenario.scenario).set(scenario.status == "passed")
        for m in scenario.measurements:
            measure = m.name.lower()
            for template, value, text in (
                (SCENARIO_SECONDS, m.seconds, f"Measured {m.name}"),
                (SCENARIO_TARGET, m.target_seconds, f"{m.name} target"),
            ):
                name = template.format(measure=measure)
                if name not in gauges:
                    gauges[name] = Gauge(name, text, ["feature", "scenario"], registry=registry)
                gauges[name].labels(scenario.feature, scenario.scenario).set(value)
    write_to_textfile(str(path), registry)
