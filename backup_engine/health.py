"""`check`: is the backup system healthy right now? Nagios-style: OK / WARNING / CRITICAL.

Config valid, storage reachable and writable, the newest backup of every configured kind young
enough, PostgreSQL's archiver configured and not failing (pg_stat_archiver), the WAL waiting to
be archived under [wal] queue_max_mb, and WAL archiving alive: a forced WAL switch must reach
storage within the limit (the live RPO probe).
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from backup_engine.config import Settings
from backup_engine.errors import BackupEngineError
from backup_engine.kinds import KINDS, POSTGRES
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


def archiver_findings(settings: Settings) -> tuple[list[Finding], bool]:
    """What PostgreSQL's archiver says, from one query: a setting or a failing archive_command
    named at once (CRITICAL), and the WAL waiting to be archived (its .ready files; a growing
    backlog is an archive falling behind, and pg_wal filling the disk). Also whether the live
    probe can tell more: not when the archiver is already known not to archive."""
    import psycopg

    from backup_engine.postgres.archiver import archiver_state

    try:
        state = archiver_state(settings.postgres.dsn)
    except BackupEngineError as exc:  # the server cannot be reached
        return [Finding("WAL archiver", CRITICAL, exc.one_line())], False
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return [Finding("WAL archiver", WARNING, f"cannot read pg_stat_archiver ({reason})")], True
    findings = []
    problem = state.problem()
    if problem is not None:
        findings.append(Finding("WAL archiver", CRITICAL, problem))
    findings.append(_backlog_finding(state.ready_segments, state.segment_bytes >> 20, settings))
    return findings, problem is None


def _backlog_finding(ready: int | None, size_mb: int, settings: Settings) -> Finding:
    if ready is None:
        return Finding("WAL backlog", WARNING, "cannot read pg_wal/archive_status: grant "
                       "pg_monitor to the checking role")  # fmt: skip
    limit = settings.wal.queue_max_mb
    backlog = ready * size_mb
    state = WARNING if limit and backlog > limit else OK
    perf = f"wal_backlog_mb={backlog};{limit or ''}"
    message = f"{ready} segments ({backlog} MB) waiting to be archived"
    if state == WARNING:
        message += f", above [wal] queue_max_mb = {limit}: the archive is falling behind"
    return Finding("WAL backlog", state, message, perf)


NOTHING_CONFIGURED = (
    "nothing is configured to back up ([postgres] dsn, [redis] url and [media] paths are all "
    "empty), so no backup's age is checked"
)


def run_checks(
    settings: Settings,
    *,
    wal_probe: bool = True,
    deep: bool = False,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[Finding]:
    findings = [Finding("config", OK, f"configuration valid ({settings.source or 'environment'})")]
    storage = settings.open_storage()
    try:
        findings.append(_storage_writable(storage))
    except BackupEngineError as exc:
        findings.append(Finding("storage", CRITICAL, exc.one_line()))
        return findings
    if len(settings.repositories) > 1 and settings.selected is None:
        findings.append(second_repository_finding(settings, storage))
    findings += check_backups(storage, deep=deep)
    if storage.object_lock is not None:
        findings.append(lock_finding(storage))
    # with stanzas, [postgres] is what they share: each cluster is checked with --stanza NAME
    postgres = POSTGRES.configured(settings)
    if settings.needs_stanza:
        findings.append(Finding("stanzas", OK, f"{len(settings.stanzas)} clusters configured "
                                f"({', '.join(settings.stanzas)}): check each with --stanza "
                                "NAME"))  # fmt: skip
    if deep and postgres:
        findings.append(archive_finding(storage))
    moment = now()
    for kind in KINDS:
        if kind.configured(settings):
            latest = kind.catalog.list(storage).latest
            stop = latest.stop_time if latest else None
            findings.append(_age_finding(kind.name, stop, settings, moment))
    if postgres:
        archiver, probe_tells_more = archiver_findings(settings)
        findings += archiver
        if wal_probe and probe_tells_more:
            try:
                findings.append(_wal_probe(settings, storage))
            except BackupEngineError as exc:
                findings.append(Finding("WAL archiving", CRITICAL, exc.one_line()))
    if not settings.stanzas and not any(kind.configured(settings) for kind in KINDS):
        findings.append(Finding("config", CRITICAL, NOTHING_CONFIGURED))
    return findings


def archive_finding(storage: Storage) -> Finding:
    """`check --deep`: the WAL archive verified (pg verify --archive), new objects only."""
    from backup_engine.postgres.archive_verify import default_state_file, verify_archive

    try:
        report = verify_archive(storage, state_file=default_state_file(storage.url))
    except BackupEngineError as exc:
        return Finding("WAL archive", CRITICAL, exc.one_line())
    if report.ok:
        return Finding("WAL archive", OK, f"no gap from {report.checked_from}, every object "
                       f"whole ({report.read} read, {report.remembered} before)")  # fmt: skip
    named = [*report.missing, *(key for key, _ in report.damaged)][:3]
    return Finding("WAL archive", CRITICAL, f"{len(report.missing)} missing, "
                   f"{len(report.damaged)} damaged, {len(report.broken)} timeline(s) broken: "
                   f"{', '.join(named)}; see pg verify --archive")  # fmt: skip


def lock_finding(storage: Storage) -> Finding:
    """Under `object_lock`: does the newest base backup carry the retention the plan gives it?
    (A bucket created without Object Lock refuses locked writes; one whose objects lost their
    retention, or a writer left without the setting, shows here.)"""
    from backup_engine.postgres.catalog import BASE_BACKUPS

    lock = storage.object_lock
    assert lock is not None
    latest = BASE_BACKUPS.list(storage).latest
    if latest is None:
        return Finding("object lock", OK, f"{lock.describe()}: no base backup yet")
    key = BASE_BACKUPS.manifest_key(latest.backup_id)
    try:
        state, written = storage.lock_state(key), storage.stat(key).modified
    except BackupEngineError as exc:
        return Finding("object lock", CRITICAL, exc.one_line())
    days = lock.days_for(key) or 0
    name = f"base backup {latest.backup_id}"
    if state.until is None:
        unlocked = f"{name} carries no Object Lock retention: the bucket's keys can delete it"
        return Finding("object lock", CRITICAL, unlocked)
    if written is not None and state.until < written + timedelta(days=days, hours=-1):
        short = f"{name} is {state.describe()}, shorter than the {days} days the plan keeps it"
        return Finding("object lock", WARNING, short)
    return Finding("object lock", OK, f"newest base backup {state.describe()}")


def check_backups(storage: Storage, *, deep: bool = False) -> list[Finding]:
    """The newest backup of each kind still holds every object its manifest lists (and, with
    `deep`, every byte matches its sha256). A damaged backup is CRITICAL, named by object."""
    findings = []
    for kind in KINDS:
        latest = kind.catalog.list(storage).latest
        if latest is None:
            continue
        name = f"{kind.what} {latest.backup_id}"
        try:
            findings.append(Finding(name, OK, kind.check_newest(storage, latest, deep=deep)))
        except BackupEngineError as exc:
            findings.append(Finding(name, CRITICAL, exc.message))
    return findings


def overall(findings: list[Finding]) -> int:
    return max((f.state for f in findings), default=UNKNOWN)


def second_repository_finding(settings: Settings, first: Storage) -> Finding:
    """[repository.2]: reachable, another store than the first (a probe written to one must
    not appear in the other: two URLs of one bucket), and as up to date (its newest base
    backup the first's). The acknowledge rule is stated."""
    from backup_engine.postgres.catalog import BASE_BACKUPS

    ack = settings.repository.acknowledge
    name = "repository 2"
    try:
        second = settings.open_repository(2)
        second.check()
        key = f"{PROBE_PREFIX}same-store-{uuid.uuid4().hex[:12]}"
        first.put_bytes(key, b"restore-drill: is this store the other repository?\n")
        try:
            same = second.exists(key)
        finally:
            first.delete(key)
        newest = BASE_BACKUPS.list(first).latest
        theirs = BASE_BACKUPS.list(second).latest
    except BackupEngineError as exc:
        return Finding(name, CRITICAL if ack == "all" else WARNING, exc.one_line())
    if same:
        return Finding(name, CRITICAL, f"{second.url} is repository 1 ({first.url}) under "
                       "another url: a probe written to one appeared in the other")  # fmt: skip
    if newest is not None and (theirs is None or theirs.backup_id < newest.backup_id):
        return Finding(name, WARNING, f"{second.url} lacks base backup {newest.backup_id}: fill "
                       "it with backup-engine storage copy --from 1 --to 2")  # fmt: skip
    return Finding(name, OK, f"{second.url} reachable, another store, as up to date as "
                   f"repository 1; a write is done when {ack} of them hold it")  # fmt: skip
