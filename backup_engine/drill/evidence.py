"""What a drill run proves, recorded as it runs: measurements against targets, and checks.

Steps append to the `ScenarioRecord` of the scenario they run in; the pytest plugin fills in
names, timings and outcomes and writes the run as JSON. (The full compliance report builds on
this record.)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backup_engine.durations import format_duration


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
    backups: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def measure(self, name: str, seconds: float, target_seconds: float) -> Measurement:
        measurement = Measurement(name, seconds, target_seconds)
        self.measurements.append(measurement)
        return measurement

    def used_backup(self, backup_id: str, objects: dict[str, str]) -> None:
        """Record which backup a scenario restored, with the sha256 of each object."""
        self.backups.append({"backup_id": backup_id, "sha256": objects})


@dataclass
class DrillRun:
    started_at: str = field(default_factory=utc_now)
    finished_at: str | None = None
    scenarios: list[ScenarioRecord] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(s.status == "passed" for s in self.scenarios)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for scenario, raw in zip(self.scenarios, data["scenarios"], strict=True):
            for measurement, raw_m in zip(scenario.measurements, raw["measurements"], strict=True):
                raw_m["passed"] = measurement.passed
        data["passed"] = self.passed
        return data

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
