"""`run-all`: every configured backup in one go (the seed's run_all_backups.py), continuing
past a failure so one broken source never stops the others from being backed up."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from backup_engine.config import Settings
from backup_engine.errors import BackupEngineError
from backup_engine.kinds import KINDS, Job
from backup_engine.progress import Progress


@dataclass(frozen=True)
class JobResult:
    job: str
    status: str  # "ok" or "failed"
    backup_id: str | None
    stored_bytes: int | None
    seconds: float
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def configured_jobs(settings: Settings, progress: Progress) -> list[Job]:
    """One job per configured kind (media: one per directory), in the order of `KINDS`."""
    return [job for kind in KINDS for job in kind.jobs(settings, progress)]


def run_all_backups(
    settings: Settings,
    *,
    progress: Progress | None = None,
    stanza: Callable[[str], Settings] | None = None,
) -> list[JobResult]:
    """Every job of `settings`; with stanzas configured and none selected, every stanza's
    cluster first (`stanza` loads a stanza's settings), then the root's Redis and media."""
    scopes = [settings]
    if settings.needs_stanza and stanza is not None:
        scopes = [stanza(name) for name in settings.stanzas] + scopes
    jobs = [job for scope in scopes for job in _jobs_or_failure(scope, progress or Progress())]
    return [_run(name, job) for name, job in jobs]


def _jobs_or_failure(settings: Settings, progress: Progress) -> list[Job]:
    """A stanza whose repository cannot be opened fails as a job; the others still run."""
    try:
        return configured_jobs(settings, progress)
    except BackupEngineError as exc:
        message = exc.one_line()

        def failed() -> tuple[str, int]:
            raise BackupEngineError(message)

        return [(f"postgres {settings.stanza}" if settings.stanza else "setup", failed)]


def _run(name: str, job: Callable[[], tuple[str, int]]) -> JobResult:
    started = time.monotonic()
    try:
        backup_id, stored = job()
    except BackupEngineError as exc:
        error = exc.one_line()
    except Exception as exc:  # noqa: BLE001 - one job's bug must not stop the others
        error = f"internal error: {type(exc).__name__}: {exc}"
    else:
        return JobResult(name, "ok", backup_id, stored, time.monotonic() - started)
    return JobResult(name, "failed", None, None, time.monotonic() - started, error)
