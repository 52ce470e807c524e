"""Restoring a base backup into a data directory.

Stream: storage -> sha256 check -> decompress -> tar extract, nothing staged on disk. The target
must be empty; with `force`, what was there is moved aside (never deleted) and moved back if the
restore fails. After extraction pg_verifybackup checks every file against PostgreSQL's own
backup_manifest, so the directory left behind is one PostgreSQL will start from.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from backup_engine.codecs import get_codec
from backup_engine.errors import (
    CommandFailed,
    VerificationFailed,
)
from backup_engine.integrity import Expected, verified_content
from backup_engine.postgres.basebackup import BASE_TAR
from backup_engine.postgres.binaries import find_pg_binaries
from backup_engine.postgres.catalog import LATEST, resolve_backup
from backup_engine.postgres.manifest import BaseBackupManifest, StoredFile
from backup_engine.postgres.pitr import AUTO, RecoveryPlan, plan_recovery
from backup_engine.postgres.recovery_config import write_recovery_config
from backup_engine.postgres.targets import RecoveryTarget
from backup_engine.process import run
from backup_engine.progress import Progress
from backup_engine.storage import Storage
from backup_engine.tarfiles import ExtractStats, extract_stream
from backup_engine.targetdir import prepared_target


@dataclass(frozen=True)
class RestoreResult:
    backup_id: str
    pgdata: Path
    stored_bytes: int
    restored_bytes: int
    files: int
    seconds: float
    verified: bool
    previous_contents: Path | None  # where --force moved what was in the directory
    sha256: dict[str, str]  # storage key -> sha256 of every object checked on the way
    plan: RecoveryPlan | None = None  # set for point-in-time restores


@dataclass(frozen=True)
class PointInTime:
    """Recover past the backup: to `target`, fetching WAL with `restore_command`."""

    target: RecoveryTarget
    restore_command: str


def running_postmaster(pgdata: Path) -> int | None:
    """The pid of a live server using `pgdata`, from its postmaster.pid, else None."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def _postmaster_in_use(pgdata: Path) -> str | None:
    pid = running_postmaster(pgdata)
    return None if pid is None else f"a PostgreSQL server (pid {pid}) is running on {pgdata}"


def restore_base_backup(
    storage: Storage,
    ref: str,
    pgdata: Path,
    *,
    force: bool = False,
    verify: bool = True,
    bindir: str | None = None,
    progress: Progress | None = None,
    point_in_time: PointInTime | None = None,
) -> RestoreResult:
    """Restore backup `ref` (an id, "latest", or "auto" with a target) into `pgdata`.

    With `point_in_time`, the recovery is planned first (backup chosen, target checked against
    the recoverable window, WAL checked for gaps): a plan that cannot work stops here, before
    the target directory is touched.
    """
    started = time.monotonic()
    plan = None
    if point_in_time is not None:
        plan = plan_recovery(storage, ref, point_in_time.target)
        manifest = plan.backup
    else:
        manifest = resolve_backup(storage, LATEST if ref == AUTO else ref)
    binaries = find_pg_binaries(bindir, major=manifest.pg_major)
    if verify:
        binaries.path("pg_verifybackup")  # fail before downloading anything
    pgdata = pgdata.absolute()
    with prepared_target(pgdata, force=force, in_use=_postmaster_in_use) as moved:
        stats, base = _download_and_extract(storage, manifest, pgdata, progress or Progress())
        pgdata.chmod(0o700)
        if verify:
            verify_data_directory(binaries.path("pg_verifybackup"), pgdata, manifest.backup_id)
        if point_in_time is not None:  # after pg_verifybackup: this changes a backed-up file
            write_recovery_config(
                pgdata,
                point_in_time.target.settings(),
                restore_command=point_in_time.restore_command,
                comment=f"restore-drill: recover backup {manifest.backup_id} to "
                f"{point_in_time.target.describe()}",
            )
    return RestoreResult(
        backup_id=manifest.backup_id,
        pgdata=pgdata,
        stored_bytes=manifest.stored_bytes,
        restored_bytes=stats.bytes,
        files=stats.files,
        seconds=time.monotonic() - started,
        verified=verify,
        previous_contents=moved,
        sha256={base.key: base.sha256},
        plan=plan,
    )


def _download_and_extract(
    storage: Storage, manifest: BaseBackupManifest, pgdata: Path, progress: Progress
) -> tuple[ExtractStats, StoredFile]:
    codec = get_codec(manifest.compression)
    stored = manifest.file(BASE_TAR + codec.suffix)
    expected = Expected(stored.key, stored.size, stored.sha256)
    with (
        progress.task(f"restore {manifest.backup_id}", stored.size) as task,
        verified_content(storage, expected, codec, task) as content,
    ):
        stats = extract_stream(content, pgdata, where=stored.key)
    return stats, stored


def verify_data_directory(pg_verifybackup: Path, pgdata: Path, backup_id: str) -> None:
    """Check every restored file against the backup_manifest PostgreSQL wrote for it."""
    try:
        run([pg_verifybackup, "--quiet", pgdata])
    except CommandFailed as exc:
        raise VerificationFailed(
            f"pg_verifybackup rejected backup {backup_id}: {exc.message}",
            hint="the backup is damaged or incomplete; restore another one",
        ) from None
