"""Past drill runs, read back from their report.json files, with RTO/RPO trends."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from backup_engine.drill.report import REPORT_JSON
from backup_engine.storage.base import Storage

REPORTS_PREFIX = "drill-reports/"


@dataclass(frozen=True)
class PastRun:
    location: str  # report directory, or its place in the repository
    started_at: str
    passed: bool
    scenarios: int
    failed: int
    measurements: dict[str, dict[str, float]]  # scenario -> {"RTO": s, "RPO": s}


def _past_run(where: str, text: str | bytes) -> PastRun | None:
    try:
        report = json.loads(text)
        measurements: dict[str, dict[str, float]] = {}
        for scenario in report["scenarios"]:
            name = f"{scenario['feature']} / {scenario['scenario']}"
            for m in scenario["measurements"]:
                measurements.setdefault(name, {})[m["name"]] = float(m["seconds"])
        return PastRun(
            where,
            report["started_at"],
            bool(report["passed"]),
            int(report["summary"]["scenarios"]),
            int(report["summary"]["failed"]),
            measurements,
        )
    except (ValueError, KeyError, TypeError):
        return None  # not a report: skipped


def load_history(root: Path) -> list[PastRun]:
    """Every run under `root` (each in its own directory), oldest first."""
    runs = [_past_run(str(p.parent), p.read_bytes()) for p in root.glob(f"*/{REPORT_JSON}")]
    return sorted((r for r in runs if r), key=lambda r: r.started_at)


def load_stored_history(storage: Storage) -> list[PastRun]:
    """Every run kept in the repository by `drill --keep-in-repository`, oldest first."""
    keys = [i.key for i in storage.list(REPORTS_PREFIX) if i.key.endswith(f"/{REPORT_JSON}")]
    runs = [
        _past_run(f"{storage.url}/{key.rsplit('/', 1)[0]}", storage.get_bytes(key)) for key in keys
    ]
    return sorted((r for r in runs if r), key=lambda r: r.started_at)


def store_report(storage: Storage, directory: Path) -> str:
    """Copy a sealed report directory into the repository; returns its prefix there."""
    prefix = f"{REPORTS_PREFIX}{directory.name}/"
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        with (
            storage.writer(prefix + path.relative_to(directory).as_posix(), if_absent=True) as out,
            path.open("rb") as fh,
        ):
            while chunk := fh.read(1 << 20):
                out.write(chunk)
            out.commit()
    return prefix


def trend(values: list[float]) -> str:
    """Last value and its change from the mean of the ones before: "1.2 s (+8 % vs 1.1 s)"."""
    last = values[-1]
    if len(values) < 2:
        return f"{last:.2f} s"
    earlier = sum(values[:-1]) / (len(values) - 1)
    change = (last - earlier) / earlier * 100 if earlier else 0.0
    return f"{last:.2f} s ({change:+.0f} % vs {earlier:.2f} s)"
