"""Steps that measure recovery against the plan's targets and record the figures."""

from __future__ import annotations

from pytest_bdd import parsers, then

from backup_engine.drill.evidence import ScenarioRecord
from backup_engine.drill.recovery import RestoredServer
from backup_engine.durations import parse_duration


@then(parsers.parse("the measured RTO is within {target}"))
def rto_within(restored: RestoredServer, drill_record: ScenarioRecord, target: str) -> None:
    measurement = drill_record.measure("RTO", restored.rto_seconds, parse_duration(target))
    assert measurement.passed, measurement.describe()
