"""Steps that measure recovery against the plan's targets and record the figures."""

from __future__ import annotations

from typing import Protocol

from pytest_bdd import given, parsers, then

from backup_engine.drill.evidence import Runbook, ScenarioRecord
from backup_engine.drill.recovery import RestoredServer
from backup_engine.drill.writer import newest_heartbeat
from backup_engine.durations import parse_duration

from .postgres_steps import Loss


@then(parsers.parse("the measured RPO is within {target}"))
def rpo_within(
    restored: RestoredServer, loss: Loss, drill_record: ScenarioRecord, target: str
) -> None:
    assert loss.at is not None, "the scenario never lost its server"
    newest = newest_heartbeat(restored.server.dsn())
    assert newest is not None, "no committed row survived the recovery"
    measured = (loss.at - newest).total_seconds()
    drill_record.expect_within("RPO", measured, parse_duration(target))


class Timed(Protocol):
    @property
    def rto_seconds(self) -> float: ...


@then(parsers.parse("the measured RTO is within {target}"))
def rto_within(restored: Timed, drill_record: ScenarioRecord, target: str) -> None:
    drill_record.expect_within("RTO", restored.rto_seconds, parse_duration(target))


@given(parsers.parse("the runbook gives {restore} to restore and {verify} to verify the data"))
def runbook_timeline(drill_record: ScenarioRecord, restore: str, verify: str) -> None:
    """The team's own runbook timeline for this scenario (the plan's is 30 and 45 minutes):
    the evidence times each restore phase and says whether the milestones were met."""
    drill_record.runbook = Runbook(parse_duration(restore), parse_duration(verify))


@then("the restore met the runbook's timeline")
def runbook_met(drill_record: ScenarioRecord) -> None:
    milestones = drill_record.to_dict()["runbook"]
    assert milestones, "no restore phase was recorded in this scenario"
    drill_record.expect_all(
        (f"runbook: {m['milestone']}", f"<= {m['target_seconds']:.0f} s",
         f"{m['seconds']:.1f} s", m["passed"])
        for m in milestones
    )  # fmt: skip
