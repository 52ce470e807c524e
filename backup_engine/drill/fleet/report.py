"""The fleet report: per target and kind the recovery point tested, RTO and RPO against the
plan's targets, pass or fail with the failing check, the last passing drill, and which targets
are stale (no passing drill within `stale_days`). Written as fleet.json, fleet.html (a chart
per target over the runs) and Prometheus metrics, sealed with SHA256SUMS and signed with the
drill's Ed25519 key, like a drill's own evidence."""

from __future__ import annotations

import hashlib
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from backup_engine import __version__
from backup_engine.drill.fleet.plan import Plan
from backup_engine.drill.fleet.target_run import PASSED, Verdict
from backup_engine.drill.report.sums import SUMS
from backup_engine.drill.runs import RunDir, run_time
from backup_engine.errors import CorruptObject
from backup_engine.jsonsafe import loads

FLEET_JSON = "fleet.json"
FLEET_HTML = "fleet.html"
FLEET_METRICS = "fleet.prom"
SCHEMA = "restore-drill/fleet-report/1"
RUN_TIME = "restore_drill_fleet_run_timestamp_seconds"
STALE_AFTER = "restore_drill_fleet_stale_after_seconds"
PASSED_NOW = "restore_drill_fleet_passed"
LAST_SUCCESS = "restore_drill_fleet_last_success_timestamp_seconds"
RTO = "restore_drill_fleet_rto_seconds"
STALE = "restore_drill_fleet_stale"
METRICS = (RUN_TIME, STALE_AFTER, PASSED_NOW, LAST_SUCCESS, RTO, STALE)


@dataclass(frozen=True)
class PastResult:
    started_at: datetime
    target: str
    kind: str
    passed: bool
    rto_seconds: float | None
    rto_target_seconds: float | None


def load_fleet_history(root: Path, plan: str, skip: Path | None = None) -> list[PastResult]:
    """Every result of this plan's earlier sealed runs under `root`, oldest first. A run whose
    fleet.json does not match its SHA256SUMS is not believed (and not counted as a pass)."""
    found: list[PastResult] = []
    if not root.is_dir():
        return found
    for run in sorted(root.iterdir()):
        if run == skip or run_time(run) is None or not _sealed(run):
            continue
        try:
            report = loads((run / FLEET_JSON).read_bytes(), where=str(run / FLEET_JSON))
            if report.get("plan") != plan:
                continue
            for result in report["results"]:
                found.append(PastResult(
                    datetime.fromisoformat(result["started_at"]), result["target"],
                    result["kind"], result["status"] == PASSED, result.get("rto_seconds"),
                    result.get("rto_target_seconds"),
                ))  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError, CorruptObject):
            continue  # not a report we can read: never counted as a pass
    return sorted(found, key=lambda r: r.started_at)


def _sealed(run: Path) -> bool:
    """fleet.json is listed in the run's SHA256SUMS with its own hash."""
    try:
        digest = hashlib.sha256((run / FLEET_JSON).read_bytes()).hexdigest()
        return f"{digest}  {FLEET_JSON}" in (run / SUMS).read_text().splitlines()
    except OSError:
        return False


def build_report(
    plan: Plan,
    verdicts: list[Verdict],
    history: list[PastResult],
    *,
    run_id: str,
    started: datetime,
    seed: int,
    executor: str,
    evidence: Path,
    now: datetime | None = None,
) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    window = timedelta(days=plan.stale_days)
    results, stale = [], []
    for verdict in verdicts:
        passes = [r.started_at for r in history if (r.target, r.kind) == (verdict.target,
                  verdict.kind) and r.passed]  # fmt: skip
        if verdict.status == PASSED:
            passes.append(datetime.fromisoformat(verdict.started_at))
        last = max(passes, default=None)
        result = {**verdict.to_dict(), "last_passed_at": last.isoformat() if last else None}
        result["stale"] = last is None or now - last > window
        if result["stale"]:
            stale.append({"target": verdict.target, "kind": verdict.kind,
                          "last_passed_at": result["last_passed_at"]})  # fmt: skip
        results.append(result)
    passed = sum(1 for v in verdicts if v.status == PASSED)
    return {
        "schema": SCHEMA, "plan": plan.name, "plan_file": str(plan.source),
        "plan_sha256": hashlib.sha256(plan.source.read_bytes()).hexdigest(),
        "run_id": run_id, "started_at": started.isoformat(), "finished_at": now.isoformat(),
        "host": socket.gethostname(), "tool": f"restore-drill {__version__}",
        "executor": executor, "seed": seed, "stale_days": plan.stale_days,
        "evidence": str(evidence),
        "summary": {"targets": len({v.target for v in verdicts}), "drills": len(verdicts),
                    "passed": passed, "failed": len(verdicts) - passed, "stale": len(stale)},
        "passed": passed == len(verdicts) and not stale,
        "results": results, "stale": stale,
    }  # fmt: skip


def write_metrics(path: Path, report: dict[str, Any]) -> None:
    """One series per target and kind, so one alert rule covers the fleet (monitoring/alerts.yml
    RestoreDrillFleetTargetStale: the last success older than the plan's stale_days)."""
    registry = CollectorRegistry()
    labels = ["plan", "target", "kind"]
    ran = Gauge(RUN_TIME, "When the fleet plan last ran",
                ["plan"], registry=registry)  # fmt: skip
    ran.labels(report["plan"]).set(datetime.fromisoformat(report["finished_at"]).timestamp())
    Gauge(STALE_AFTER, "The plan's stale_days: a target with no "
          "passing drill this long is stale", ["plan"],
          registry=registry).labels(report["plan"]).set(report["stale_days"] * 86400)  # fmt: skip
    passed = Gauge(PASSED_NOW, "1 if the target's last drill passed", labels,
                   registry=registry)  # fmt: skip
    success = Gauge(LAST_SUCCESS,
                    "When the target's last passing drill started (0: never)", labels,
                    registry=registry)  # fmt: skip
    rto = Gauge(RTO, "The target's RTO in its last drill", labels,
                registry=registry)  # fmt: skip
    stale = Gauge(STALE, "1 if no drill of the target passed within the "
                  "plan's stale_days", labels, registry=registry)  # fmt: skip
    for result in report["results"]:
        key = (report["plan"], result["target"], result["kind"])
        passed.labels(*key).set(1 if result["status"] == PASSED else 0)
        last = result["last_passed_at"]
        success.labels(*key).set(datetime.fromisoformat(last).timestamp() if last else 0)
        stale.labels(*key).set(1 if result["stale"] else 0)
        if result["rto_seconds"] is not None:
            rto.labels(*key).set(result["rto_seconds"])
    write_to_textfile(str(path), registry)


def render_fleet_html(report: dict[str, Any], history: list[PastResult]) -> str:
    """The overview: one row per target and kind, then a chart of each one's RTO over the runs
    (this run last), red where a drill failed or went over its target."""
    from backup_engine.drill.report.charts import measure_chart
    from backup_engine.drill.report.html import render

    charts = []
    for result in report["results"]:
        points = [(r.started_at.isoformat(), r.rto_seconds, r.rto_target_seconds or float("inf"))
                  for r in history if (r.target, r.kind) == (result["target"], result["kind"])
                  and r.rto_seconds is not None]  # fmt: skip
        if result["rto_seconds"] is not None:
            points.append((result["started_at"], result["rto_seconds"],
                           result["rto_target_seconds"] or float("inf")))  # fmt: skip
        if points:
            charts.append({"result": result, "svg": measure_chart("RTO", points[-30:]),
                           "runs": len(points)})  # fmt: skip
    return render("fleet.html.j2", report=report, charts=charts)


def seal_run(
    run: RunDir,
    report: dict[str, Any],
    history: list[PastResult],
    key_file: Path | None,
    metrics_file: Path | None,
) -> str | None:
    """fleet.json, fleet.html and the metrics written, SHA256SUMS over the run (signed with the
    drill's key when there is one), `latest` switched to it; a problem switching is returned."""
    import json

    from backup_engine.drill.report.signing import load_private_key
    from backup_engine.drill.report.sums import write_sums
    from backup_engine.drill.runs import point_latest

    (run.path / FLEET_JSON).write_text(json.dumps(report, indent=2) + "\n")
    (run.path / FLEET_HTML).write_text(render_fleet_html(report, history))
    write_metrics(run.path / FLEET_METRICS, report)
    write_sums(run.path, private_key=load_private_key(key_file) if key_file else None)
    if metrics_file is not None:
        write_metrics(metrics_file, report)
    return point_latest(run)


def check_fleet_json(directory: Path) -> None:
    """A run directory's fleet.json is there and is a fleet report (for verify_report)."""
    from backup_engine.errors import IntegrityError

    try:
        report = loads((directory / FLEET_JSON).read_bytes(), where=FLEET_JSON)
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"{directory} has no readable {FLEET_JSON}: {exc}") from None
    if not isinstance(report, dict) or report.get("schema") != SCHEMA:
        raise IntegrityError(f"{FLEET_JSON} in {directory} is not a fleet report ({SCHEMA})")
