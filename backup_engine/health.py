"""`check`: is the backup system healthy right now? Nagios-style: OK / WARNING / CRITICAL.

Config valid, storage reachable and writable, the newest backup of every configured kind young
enough, and WAL archiving alive: a forced WAL switch must reach storage within the limit (the
live RPO probe).
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from backup_engine.config import Settings
from backup_engine.errors import BackupEngineError
from backup_engine.storage.base import Storage

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATE_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
PROBE_PREFIX = "checks/"


@dataclass(frozen=True)
class Finding:
    name: str
    state: int
    message: str
    perfdata: str | None = None


def _storage_writable(storage: Storage) -> Finding:
    key = f"{PROBE_PREFIX}probe-{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    storage.check()
    storage.put_bytes(key, b"restore-drill write probe\n")
    readable = storage.get_bytes(key) == b"restore-drill write probe\n"
    storage.delete(key)
    if not readable:
        return Finding("storage", CRITICAL, f"{storage.url} returned other bytes than written")
    return Finding("storage", OK, f"{storage.url} reachable and writable")


def _age_finding(kind: str, stop: datetime | None, settings: Settings, now: datetime) -> Finding:
    if stop is None:
        return Finding(f"{kind} backup", CRITICAL, f"no complete {kind} backup")
    hours = (now - stop).total_seconds() / 3600
    limits = settings.check
    state = (
        CRITICAL if hours > limits.critical_age_hours
        else WARNING if hours > limits.warn_age_hours
        else OK
    )  # fmt: skip
    perf = f"{kind}_age_hours={hours:.2f};{limits.warn_age_hours};{limits.critical_age_hours}"
    return Finding(f"{kind} backup", state, f"newest {kind} backup {hours:.1f} h old", perf)


def _wal_probe(settings: Settings, storage: Storage) -> Finding:
    from backup_engine.postgres.archiving import ArchivingStalled, switch_and_wait_archived

    limits = settings.check
    try:
        archived = switch_and_wait_archived(
            settings.postgres.dsn, storage, timeout=limits.wal_timeout_seconds
        )
    except ArchivingStalled as exc:
        return Finding("WAL archiving", CRITICAL, exc.message)
    state = WARNING if archived.seconds > limits.wal_warn_seconds else OK
    thresholds = f"{limits.wal_warn_seconds};{limits.wal_timeout_seconds}"
    perf = f"wal_probe_seconds={archived.seconds:.2f};{thresholds}"
    message = f"segment {archived.name} archived {archived.seconds:.1f} s after a forced switch"
    return Finding("WAL archiving", state, message, perf)


def run_checks(
    settings: Settings,
    *,
    wal_probe: bool = True,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[Finding]:
    from backup_engine.media.manifest import MEDIA_SNAPSHOTS
    from backup_engine.postgres.catalog import BASE_BACKUPS
    from backup_engine.redis.manifest import REDIS_BACKUPS

    findings = [Finding("config", OK, f"configuration valid ({settings.source or 'environment'})")]
    storage = settings.open_storage()
    try:
        findings.append(_storage_writable(storage))
    except BackupEngineError as exc:
        findings.append(Finding("storage", CRITICAL, exc.one_line()))
        return findings
    moment = now()
    if settings.postgres.dsn:
        latest = BASE_BACKUPS.list(storage).latest
        findings.append(
            _age_finding("postgres", latest.stop_time if latest else None, settings, moment)
        )
        if wal_probe:
            try:
                findings.append(_wal_probe(settings, storage))
            except BackupEngineError as exc:
                findings.append(Finding("WAL archiving", CRITICAL, exc.one_line()))
    if settings.redis.url:
        latest_redis = REDIS_BACKUPS.list(storage).latest
        stop = latest_redis.stop_time if latest_redis else None
        findings.append(_age_finding("redis", stop, settings, moment))
    if settings.media.paths:
        latest_media = MEDIA_SNAPSHOTS.list(storage).latest
        stop = latest_media.stop_time if latest_media else None
        findings.append(_age_finding("media", stop, settings, moment))
    return findings


def overall(findings: list[Finding]) -> int:
    return max((f.state for f in findings), default=UNKNOWN)
