"""Past drill runs, read back from their report.json files, with RTO/RPO trends."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from backup_engine.drill.report import REPORT_JSON


@dataclass(frozen=True)
class PastRun:
    directory: Path
    started_at: str
    passed: bool
    scenarios: int
    failed: int
    measurements: dict[str, dict[str, float]]  # scenario -> {"RTO": s, "RPO": s}


def load_history(root: Path) -> list[PastRun]:
    """Every run under `root` (each in its own directory), oldest first; unreadable ones skipped."""
    runs = []
    for path in sorted(root.glob(f"*/{REPORT_JSON}")):
        try:
            report = json.loads(path.read_text())
            measurements: dict[str, dict[str, float]] = {}
            for scenario in report["scenarios"]:
                name = f"{scenario['feature']} / {scenario['scenario']}"
                for m in scenario["measurements"]:
                    measurements.setdefault(name, {})[m["name"]] = float(m["seconds"])
            runs.append(
                PastRun(
                    path.parent,
                    report["started_at"],
                    bool(report["passed"]),
                    int(report["summary"]["scenarios"]),
                    int(report["summary"]["failed"]),
                    measurements,
                )
            )
        except (ValueError, KeyError, TypeError):
            continue
    return sorted(runs, key=lambda r: r.started_at)


def trend(values: list[float]) -> str:
    """Last value and its change from the mean of the ones before: "1.2 s (+8 % vs 1.1 s)"."""
    last = values[-1]
    if len(values) < 2:
        return f"{last:.2f} s"
    earlier = sum(values[:-1]) / (len(values) - 1)
    change = (last - earlier) / earlier * 100 if earlier else 0.0
    return f"{last:.2f} s ({change:+.0f} % vs {earlier:.2f} s)"
