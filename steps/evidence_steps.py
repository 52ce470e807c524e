"""Steps that measure recovery against the plan's targets and record the figures."""

from __future__ import annotations

from typing import Protocol

from pytest_bdd import parsers, then

from backup_engine.drill.evidence import ScenarioRecord
from backup_engine.drill.recovery import RestoredServer
from backup_engine.drill.writer import newest_heartbeat
from backup_engine.durations import parse_duration
from steps.postgres_steps import Loss


@then(parsers.parse("the measured RPO is within {target}"))
def rpo_within(
    restored: RestoredServer, loss: Loss, drill_record: ScenarioRecord, target: str
) -> None:
    assert loss.at is not None, "the scenario never lost its server"
    newest = newest_heartbeat(restored.server.dsn())
    assert newest is not None, "no committed row survived the recovery"
    measured = (loss.at - newest).total_seconds()
    measurement = drill_record.measure("RPO", measured, parse_duration(target))
    assert measurement.passed, measurement.describe()


class Timed(Protocol):
    @property
    def rto_seconds(self) -> float: ...


@then(parsers.parse("the measured RTO is within {target}"))
def rto_within(restored: Timed, drill_record: ScenarioRecord, target: str) -> None:
    measurement = drill_record.measure("RTO", restored.rto_seconds, parse_duration(target))
    assert measurement.passed, measurement.describe()
