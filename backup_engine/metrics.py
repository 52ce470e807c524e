"""Prometheus textfile metrics of the backups themselves (`backup-engine metrics`): when the
newest backup of each kind ended and how big it is, and when the newest WAL was archived (from
the repository, refreshed after the daily backups); and PostgreSQL's archiver as it is now
(`metrics --archiver`: one query, no repository access, refreshed every minute by a timer), on
which the WAL alerts stand: a value frozen between daily runs can only raise false alerts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from backup_engine.kinds import KINDS
from backup_engine.postgres.archive_verify import ArchiveReport
from backup_engine.postgres.archiver import ArchiverState
from backup_engine.postgres.wal import META_ARCHIVED_AT, WAL_PREFIX
from backup_engine.storage.base import Storage

BACKUP_LAST = "restore_drill_backup_last_timestamp_seconds"
BACKUP_SIZE = "restore_drill_backup_last_size_bytes"
WAL_LAST = "restore_drill_wal_last_archived_timestamp_seconds"


@dataclass(frozen=True)
class LatestBackup:
    kind: str
    timestamp: float
    size: int


def latest_backups(storage: Storage) -> list[LatestBackup]:
    found = []
    for kind in KINDS:
        latest = kind.catalog.list(storage).latest
        if latest is not None:
            found.append(LatestBackup(kind.name, latest.stop_time.timestamp(),
                                      kind.own_bytes(latest)))  # fmt: skip
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


REPOSITORY_BYTES = "restore_drill_repository_bytes"
WAL_BACKLOG = "restore_drill_wal_backlog_bytes"
WAL_BACKLOG_LIMIT = "restore_drill_wal_backlog_limit_bytes"
ARCHIVE_VERIFIED = "restore_drill_wal_archive_verified_timestamp_seconds"
ARCHIVE_PROBLEMS = "restore_drill_wal_archive_problems"
ARCHIVE_OBJECTS = "restore_drill_wal_archive_objects_checked"
ARCHIVER_COLLECTED = "restore_drill_archiver_collected_timestamp_seconds"
ARCHIVER_UP = "restore_drill_archiver_up"
ARCHIVER_CONFIGURED = "restore_drill_archiver_configured"
ARCHIVER_LAST_ARCHIVED = "restore_drill_archiver_last_archived_timestamp_seconds"
ARCHIVER_LAST_FAILED = "restore_drill_archiver_last_failed_timestamp_seconds"
ARCHIVER_FAILED = "restore_drill_archiver_failed_count"
ARCHIVER_OLDEST_READY = "restore_drill_archiver_oldest_ready_timestamp_seconds"
ARCHIVER_METRICS = (ARCHIVER_COLLECTED, ARCHIVER_UP, ARCHIVER_CONFIGURED, ARCHIVER_LAST_ARCHIVED,
                    ARCHIVER_LAST_FAILED, ARCHIVER_FAILED, ARCHIVER_OLDEST_READY, WAL_BACKLOG,
                    WAL_BACKLOG_LIMIT)  # fmt: skip


RUN_LAST = "restore_drill_backup_run_timestamp_seconds"
RUN_FAILED = "restore_drill_backup_run_failed"


def write_run_metrics(path: Path, failed: dict[str, bool], *, now: float) -> None:
    """What `run-all --metrics-file` writes, success or not: when it ran and which job failed
    (kind: postgres, redis, media), so a failed backup alerts that night, not 26 h later."""
    registry = CollectorRegistry()
    Gauge(RUN_LAST, "When run-all last ran", registry=registry).set(now)
    gauge = Gauge(RUN_FAILED, "1 if this kind's backup failed in the last run-all", ["kind"],
                  registry=registry)  # fmt: skip
    for kind, bad in failed.items():
        gauge.labels(kind).set(1 if bad else 0)
    write_to_textfile(str(path), registry)


def write_archiver_metrics(
    path: Path, state: ArchiverState | None, limit_bytes: int, *, now: float
) -> None:
    """The archiver's state for the WAL alerts; `state` None: the server could not be asked
    (up 0, and the time of the attempt, so a dead timer and a dead server look different)."""
    registry = CollectorRegistry()

    def gauge(name: str, text: str, value: float) -> None:
        Gauge(name, text, registry=registry).set(value)

    gauge(ARCHIVER_COLLECTED, "When the archiver's state was last read", now)
    gauge(ARCHIVER_UP, "1 if the server answered", 0 if state is None else 1)
    if state is not None:
        gauge(ARCHIVER_CONFIGURED, "1 if archive_mode is on and archive_command is set",
              1 if state.configured else 0)  # fmt: skip
        if state.last_archived_at is not None:
            gauge(ARCHIVER_LAST_ARCHIVED, "pg_stat_archiver.last_archived_time",
                  state.last_archived_at.timestamp())  # fmt: skip
        if state.last_failed_at is not None:
            gauge(ARCHIVER_LAST_FAILED, "pg_stat_archiver.last_failed_time",
                  state.last_failed_at.timestamp())  # fmt: skip
        gauge(ARCHIVER_FAILED, "pg_stat_archiver.failed_count", state.failed_count)
        if state.oldest_ready_at is not None:  # absent when nothing waits: nothing is late
            gauge(ARCHIVER_OLDEST_READY, "When the oldest WAL segment waiting was finished",
                  state.oldest_ready_at.timestamp())  # fmt: skip
        if state.ready_segments is not None:
            gauge(WAL_BACKLOG, "WAL waiting to be archived (pg_wal/archive_status .ready files)",
                  state.ready_segments * state.segment_bytes)  # fmt: skip
            gauge(WAL_BACKLOG_LIMIT, "[wal] queue_max_mb: the backlog that is too much",
                  limit_bytes)  # fmt: skip
    write_to_textfile(str(path), registry)


@dataclass(frozen=True)
class RepositoryState:
    """What `metrics` read of one repository: None for a repository that could not be read
    (its expected kinds are then written as never backed up, so BackupMissing names it)."""

    backups: list[LatestBackup] | None
    wal_archived: float | None = None
    usage: dict[str, int] | None = None


def read_repository(storage: Storage, usage: dict[str, int] | None = None) -> RepositoryState:
    return RepositoryState(latest_backups(storage), last_wal_archived(storage), usage)


def write_backup_metrics(
    path: Path,
    repositories: list[RepositoryState],
    expected: tuple[str, ...] = (),
) -> list[LatestBackup]:
    """`expected`: the kinds the configuration backs up. One with no backup at all is written
    as ended at 0 (1970), so "no backup in 26 hours" fires for it instead of its series
    being absent. Usage: bytes stored per backup type (`backup-engine usage`). With a second
    repository every series carries `repository` ("1", "2"): each one's backups alert on
    their own. Returns the first repository's newest backups."""
    registry = CollectorRegistry()
    labelled = len(repositories) > 1
    extra = ["repository"] if labelled else []
    last = Gauge(BACKUP_LAST, "When the newest complete backup ended", ["kind", *extra],
                 registry=registry)  # fmt: skip
    size = Gauge(BACKUP_SIZE, "Bytes stored by the newest backup", ["kind", *extra],
                 registry=registry)  # fmt: skip
    wal: Gauge | None = None  # absent until a repository has archived WAL
    stored = Gauge(REPOSITORY_BYTES, "Bytes the repository stores, per backup type",
                   ["type", *extra], registry=registry)  # fmt: skip
    for number, state in enumerate(repositories, 1):
        which = [str(number)] if labelled else []
        found = {b.kind for b in state.backups or []}
        for kind in expected:
            if kind not in found:
                last.labels(kind, *which).set(0)
        for backup in state.backups or []:
            last.labels(backup.kind, *which).set(backup.timestamp)
            size.labels(backup.kind, *which).set(backup.size)
        if state.wal_archived is not None:
            if wal is None:
                wal = Gauge(WAL_LAST, "When the newest WAL file was archived", extra,
                            registry=registry)  # fmt: skip
            (wal.labels(*which) if which else wal).set(state.wal_archived)
        for kind, count in (state.usage or {}).items():
            stored.labels(kind, *which).set(count)
    backups = repositories[0].backups or []
    write_to_textfile(str(path), registry)
    return backups


def write_archive_metrics(path: Path, report: ArchiveReport, *, now: float) -> None:
    """`pg verify --archive --metrics-file`: when the archive was last verified, the problems
    found (missing, damaged, broken timelines: alert on > 0) and the objects it covers."""
    registry = CollectorRegistry()
    Gauge(ARCHIVE_VERIFIED, "When the WAL archive was last verified", registry=registry).set(now)
    problems = Gauge(ARCHIVE_PROBLEMS, "Problems the last WAL archive verification found",
                     ["kind"], registry=registry)  # fmt: skip
    problems.labels("missing").set(len(report.missing))
    problems.labels("damaged").set(len(report.damaged))
    problems.labels("timeline").set(len(report.broken))
    Gauge(ARCHIVE_OBJECTS, "Archive objects found whole (read now or remembered)",
          registry=registry).set(report.read + report.remembered)  # fmt: skip
    write_to_textfile(str(path), registry)
