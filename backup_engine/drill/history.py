"""Past drill runs, read back from their report.json files, with RTO/RPO trends."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from backup_engine.drill.report import REPORT_JSON
from backup_engine.drill.report.sums import SUMS
from backup_engine.errors import ObjectNotFound
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
    controls: dict[str, bool] = field(default_factory=dict)  # control id -> passed in this run
    evidence_sha256: str | None = None  # of the run's SHA256SUMS: names its whole evidence
    targets: dict[str, dict[str, float]] = field(default_factory=dict)  # as measurements


@dataclass(frozen=True)
class ControlStatus:
    control: str
    last_passed: PastRun | None
    latest: PastRun  # the newest run that exercised it

    def to_dict(self) -> dict[str, object]:
        last = self.last_passed
        return {
            "control": self.control,
            "last_passed_at": last.started_at if last else None,
            "evidence": last.location if last else None,
            "evidence_sha256": last.evidence_sha256 if last else None,
            "latest_run_at": self.latest.started_at,
            "latest_run_passed": self.latest.controls[self.control],
        }


def control_history(runs: list[PastRun]) -> list[ControlStatus]:
    """Per control: when it last passed (and that run's evidence), and how its latest run went."""
    statuses = []
    for control in sorted({c for run in runs for c in run.controls}):
        exercised = [run for run in runs if control in run.controls]
        passed = [run for run in exercised if run.controls[control]]
        statuses.append(ControlStatus(control, passed[-1] if passed else None, exercised[-1]))
    return statuses


def _past_run(where: str, text: str | bytes, sums: bytes | None = None) -> PastRun | None:
    try:
        report = json.loads(text)
        measurements: dict[str, dict[str, float]] = {}
        targets: dict[str, dict[str, float]] = {}
        for scenario in report["scenarios"]:
            name = f"{scenario['feature']} / {scenario['scenario']}"
            for m in scenario["measurements"]:
                measurements.setdefault(name, {})[m["name"]] = float(m["seconds"])
                targets.setdefault(name, {})[m["name"]] = float(m["target_seconds"])
        return PastRun(
            where,
            report["started_at"],
            bool(report["passed"]),
            int(report["summary"]["scenarios"]),
            int(report["summary"]["failed"]),
            measurements,
            {c["id"]: bool(c["passed"]) for c in report.get("controls", [])},
            hashlib.sha256(sums).hexdigest() if sums is not None else None,
            targets,
        )
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None  # not a report (or a forged one): skipped


def load_history(root: Path) -> list[PastRun]:
    """Every run under `root` (each in its own directory), oldest first."""
    runs = [
        _past_run(str(p.parent), p.read_bytes(), _read(p.parent / SUMS))
        for p in root.glob(f"*/{REPORT_JSON}")
        if not p.parent.is_symlink()  # latest: the same run again
    ]
    return sorted((r for r in runs if r), key=lambda r: r.started_at)


def load_stored_history(storage: Storage) -> list[PastRun]:
    """Every run kept in the repository by `drill --keep-in-repository`, oldest first."""
    keys = [i.key for i in storage.list(REPORTS_PREFIX) if i.key.endswith(f"/{REPORT_JSON}")]
    runs = []
    for key in keys:
        prefix = key.rsplit("/", 1)[0]
        try:
            sums: bytes | None = storage.get_bytes(f"{prefix}/{SUMS}")
        except ObjectNotFound:
            sums = None
        runs.append(_past_run(f"{storage.url}/{prefix}", storage.get_bytes(key), sums))
    return sorted((r for r in runs if r), key=lambda r: r.started_at)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


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


@dataclass(frozen=True)
class Series:
    """One measure of one scenario over the runs that measured it, oldest first."""

    scenario: str
    measure: str  # RTO, RPO
    points: list[tuple[str, float, float]]  # (run started at, seconds, target seconds)

    @property
    def over(self) -> int:
        return sum(seconds > target for _, seconds, target in self.points)


def series(runs: list[PastRun], last: int | None = None) -> list[Series]:
    """Every scenario's RTO and RPO over the last `last` runs."""
    chosen = runs[-last:] if last else runs
    found: dict[tuple[str, str], list[tuple[str, float, float]]] = {}
    for run in chosen:
        for scenario, figures in run.measurements.items():
            for measure, seconds in figures.items():
                target = run.targets.get(scenario, {}).get(measure, float("inf"))
                found.setdefault((scenario, measure), []).append((run.started_at, seconds, target))
    return [Series(s, m, points) for (s, m), points in sorted(found.items())]


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float]) -> str:
    """The shape of a series in one line of text, for the terminal."""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(SPARKS[round((v - low) / span * (len(SPARKS) - 1))] for v in values)


def trend(values: list[float]) -> str:
    """Last value and its change from the mean of the ones before: "1.2 s (+8 % vs 1.1 s)"."""
    last = values[-1]
    if len(values) < 2:
        return f"{last:.2f} s"
    earlier = sum(values[:-1]) / (len(values) - 1)
    change = (last - earlier) / earlier * 100 if earlier else 0.0
    return f"{last:.2f} s ({change:+.0f} % vs {earlier:.2f} s)"
