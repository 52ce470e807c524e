from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from backup_engine.drill.evidence import DrillRun, ScenarioRecord
from backup_engine.drill.report import report_schema, write_json


def test_measurements_pass_only_within_target(tmp_path: Path) -> None:
    record = ScenarioRecord(feature="F", scenario="S", nodeid="n")
    within = record.measure("RTO", 12.5, 4 * 3600)
    over = record.measure("RTO", 3 * 3600, 1800)
    assert within.passed and "within target 4 h 00 min" in within.describe()
    assert not over.passed and "OVER target 30 min 00 s" in over.describe()

    record.status = "passed"
    run = DrillRun(scenarios=[record], finished_at=record.started_at)
    write_json(run.to_dict(), tmp_path / "out")
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    jsonschema.validate(data, report_schema())
    assert data["passed"] is True
    assert [m["passed"] for m in data["scenarios"][0]["measurements"]] == [True, False]
    assert data["scenarios"][0]["measurements"][0]["target_seconds"] == 14400


def test_a_run_fails_when_any_scenario_fails() -> None:
    ok = ScenarioRecord(feature="F", scenario="a", nodeid="a", status="passed")
    bad = ScenarioRecord(feature="F", scenario="b", nodeid="b", status="failed")
    assert DrillRun(scenarios=[ok]).passed
    assert not DrillRun(scenarios=[ok, bad]).passed
    assert not DrillRun(scenarios=[]).passed  # nothing ran: nothing proven
