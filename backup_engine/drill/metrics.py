"""Prometheus textfile metrics (for node_exporter's textfile collector): how the last drill
went, its RTO/RPO per scenario against targets, and how fresh the backups are per kind.
monitoring/alerts.yml alerts on these names."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile
from prometheus_client.parser import text_string_to_metric_families

from backup_engine.drill.evidence import DrillRun
from backup_engine.media.manifest import MEDIA_SNAPSHOTS
from backup_engine.postgres.catalog import BASE_BACKUPS
from backup_engine.postgres.wal import META_ARCHIVED_AT, WAL_PREFIX
from backup_engine.redis.manifest import REDIS_BACKUPS
from backup_engine.storage.base import Storage

LAST_RUN = "restore_drill_last_run_timestamp_seconds"
LAST_SUCCESS = "restore_drill_last_success_timestamp_seconds"
PASSED = "restore_drill_passed"
SCENARIO_PASSED = "restore_drill_scenario_passed"
SCENARIO_SECONDS = "restore_drill_scenario_{measure}_seconds"
SCENARIO_TARGET = "restore_drill_scenario_{measure}_target_seconds"
BACKUP_LAST = "backup_last_timestamp_seconds"
BACKUP_SIZE = "backup_last_size_bytes"
WAL_LAST = "backup_wal_last_archived_timestamp_seconds"
ALL_METRICS = (
    LAST_RUN, LAST_SUCCESS, PASSED, SCENARIO_PASSED,
    SCENARIO_SECONDS.format(measure="rto"), SCENARIO_TARGET.format(measure="rto"),
    SCENARIO_SECONDS.format(measure="rpo"), SCENARIO_TARGET.format(measure="rpo"),
    BACKUP_LAST, BACKUP_SIZE, WAL_LAST,
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


@dataclass(frozen=True)
class LatestBackup:
    kind: str
    timestamp: float
    size: int


def latest_backups(storage: Storage) -> list[LatestBackup]:
    found = []
    base, redis = BASE_BACKUPS.list(storage).latest, REDIS_BACKUPS.list(storage).latest
    media = MEDIA_SNAPSHOTS.list(storage).latest
    if base is not None:
        found.append(LatestBackup("postgres", base.stop_time.timestamp(), base.stored_bytes))
    if redis is not None:
        found.append(LatestBackup("redis", redis.stop_time.timestamp(), redis.stored_bytes))
    if media is not None:  # content is shared: a snapshot's own size is what it added
        found.append(LatestBackup("media", media.stop_time.timestamp(), media.new_bytes))
    return found


def last_wal_archived(storage: Storage) -> float | None:
    never = datetime.min.replace(tzinfo=UTC)
    newest = max(storage.list(WAL_PREFIX), key=lambda o: (o.modified or never, o.key), default=None)
    if newest is None:
        return None
    recorded = storage.stat(newest.key).metadata.get(META_ARCHIVED_AT)
    if recorded:
        return datetime.fromisoformat(recorded).timestamp()
    return newest.modified.timestamp() if newest.modified else None


def write_backup_metrics(path: Path, storage: Storage) -> list[LatestBackup]:
    registry = CollectorRegistry()
    last = Gauge(BACKUP_LAST, "When the newest complete backup ended", ["kind"], registry=registry)
    size = Gauge(BACKUP_SIZE, "Bytes stored by the newest backup", ["kind"], registry=registry)
    backups = latest_backups(storage)
    for backup in backups:
        last.labels(backup.kind).set(backup.timestamp)
        size.labels(backup.kind).set(backup.size)
    archived = last_wal_archived(storage)
    if archived is not None:
        Gauge(WAL_LAST, "When the newest WAL file was archived", registry=registry).set(archived)
    write_to_textfile(str(path), registry)
    return backups
