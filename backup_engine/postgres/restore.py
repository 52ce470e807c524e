"""Restoring a base backup into a data directory, set up to recover to exactly one point.

Stream: storage -> sha256 check -> decompress -> tar extract, nothing staged on disk. The target
must be empty; with `force`, what was there is moved aside (never deleted) and moved back if the
restore fails; a target inside, above or around a running server is refused, forced or not.
After extraction pg_verifybackup checks every file against PostgreSQL's own backup_manifest.

Then the recovery: planned before anything is written (timeline, backup, window, gaps), and
written so the restored server always recovers from the archive and ends on a new timeline: the
backup's own recovery settings are removed, `recovery.signal` is always created, the timeline
is written as a number, and archiving is off unless the operator asks to preserve it. Without a
target, "latest" is the end of the archive (the end of the backup when no WAL follows it).
"""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from backup_engine.delta import DeltaStats
from backup_engine.errors import CommandFailed, UsageError, VerificationFailed
from backup_engine.postgres.binaries import find_pg_binaries
from backup_engine.postgres.catalog import LATEST, resolve_backup
from backup_engine.postgres.chain import backup_chain
from backup_engine.postgres.delta_target import delta_target
from backup_engine.postgres.file_checksums import FileChecksums
from backup_engine.postgres.live import live_server_near
from backup_engine.postgres.pitr import AUTO, NoWalAfterBackup, RecoveryPlan, plan_recovery
from backup_engine.postgres.recovery_config import (
    RECOVERY_SIGNAL,
    STANDBY_SIGNAL,
    ConfigChanges,
    write_recovery_config,
)
from backup_engine.postgres.restore_chain import check_staging, restore_chain
from backup_engine.postgres.restore_files import restore_files
from backup_engine.postgres.tablespaces import TablespaceMapping, plan_tablespaces
from backup_engine.postgres.targets import Recovery, RecoveryTarget
from backup_engine.process import run
from backup_engine.progress import Progress
from backup_engine.storage import Storage
from backup_engine.targetdir import prepared_target

__all__ = ["Recovery", "RestoreResult", "restore_base_backup", "verify_data_directory"]


@dataclass(frozen=True)
class RestoreResult:
    backup_id: str
    pgdata: Path
    stored_bytes: int
    restored_bytes: int
    files: int
    seconds: float
    verified: bool
    summed_while_written: bool  # checksums compared as written; pg_verifybackup did the rest
    previous_contents: Path | None  # where --force moved what was in the directory
    sha256: dict[str, str]  # storage key -> sha256 of every object checked on the way
    plan: RecoveryPlan | None = None  # None only for a files-only (verification) restore
    config: ConfigChanges | None = None
    archive_mode: str | None = None
    phases: tuple[tuple[str, float], ...] = ()  # (what, seconds), in order: the runbook's steps
    chain: tuple[str, ...] = ()  # the backups combined, the full one first (one: not incremental)
    tablespaces: tuple[tuple[str, Path], ...] = ()  # (name or oid, where it was restored)
    standby: bool = False  # set up as a standby (standby.signal), not to end recovery
    delta: DeltaStats | None = None  # a delta restore: what it compared, wrote and removed


def plan_for(storage: Storage, ref: str, target: RecoveryTarget | None) -> RecoveryPlan:
    """The plan for `target`; without one, the end of the archive, or the end of the backup
    when the archive holds no WAL after it (said so in the plan's `why`)."""
    if target is not None:
        return plan_recovery(storage, ref, target)
    try:
        return plan_recovery(storage, ref, RecoveryTarget("latest"))
    except NoWalAfterBackup:
        plan = plan_recovery(storage, ref, RecoveryTarget("immediate"))
        if plan.backup.from_standby:
            # A standby writes no backup-end record: PostgreSQL becomes consistent on the last
            # record the backup holds, and "immediate" then finds no record to stop after
            # ("recovery ended before configured recovery target was reached"). With nothing
            # archived after the backup, the end of its WAL is the same point.
            return replace(plan, target=RecoveryTarget("latest", timeline=plan.target.timeline),
                           why="no WAL is archived after this standby's backup, so the end of "
                           "its own WAL")  # fmt: skip
        return replace(plan, why="no WAL is archived after the backup, so its end (immediate)")


def restore_base_backup(
    storage: Storage,
    ref: str,
    pgdata: Path,
    *,
    recovery: Recovery | None,
    force: bool = False,
    verify: bool = True,
    bindir: str | None = None,
    progress: Progress | None = None,
    staging: Path | None = None,
    tablespaces: TablespaceMapping | None = None,
    delta: bool = False,
) -> RestoreResult:
    """Restore backup `ref` (an id, "latest", or "auto": chosen for the target) into `pgdata`.

    The recovery is planned first: a plan that cannot work stops here, before the target
    directory is touched. `recovery=None` restores the files only, for verification (pg verify's
    trial restore); such a directory is never started. An incremental backup is restored with
    its chain: each backup unpacked in a directory under `staging` (default: beside `pgdata`),
    then pg_combinebackup writes the target; the staging directory is removed either way.
    Tablespaces go back where they were, or where `tablespaces` maps them (tablespaces.py);
    every destination is checked, and prepared like the target, before anything is written.
    With `delta`, the target may hold this cluster's own files (stopped): only what differs
    from the backup is written, and what it does not hold removed (delta_target.py).
    """
    started = time.monotonic()
    phases = _Phases(started)
    plan = None
    if recovery is not None:
        plan = plan_for(storage, ref, recovery.target)
        manifest = plan.backup
    else:
        manifest = resolve_backup(storage, LATEST if ref == AUTO else ref)
    binaries = find_pg_binaries(bindir, major=manifest.pg_major)
    chain = backup_chain(storage, manifest)  # a broken chain is refused before any write
    if verify:
        binaries.path("pg_verifybackup")  # fail before downloading anything
    combine = binaries.path("pg_combinebackup") if len(chain) > 1 else None
    pgdata = pgdata.absolute()
    staging = (staging or pgdata.parent).absolute()
    if combine is not None:
        check_staging(staging, chain)
    if delta and force:
        raise UsageError(
            "--delta and --force do not go together",
            hint="--delta rewrites the cluster's files in place; --force moves them aside first",
        )
    planned = plan_tablespaces(manifest, tablespaces or TablespaceMapping(), pgdata)
    config = None
    phases.done("find the backup and plan the recovery")
    # pg_combinebackup rewrites the files of a chain: only a single backup's are summed as
    # they are written, and its pg_verifybackup then skips reading them back
    sums = FileChecksums() if verify and combine is None else None
    with ExitStack() as targets:
        moved, rewrite = None, None
        if delta:
            rewrite = targets.enter_context(delta_target(
                pgdata, manifest.system_identifier, manifest.backup_id, planned, manifest.pg_major,
                in_use=live_server_near,
            ))  # fmt: skip
        else:
            moved = targets.enter_context(
                prepared_target(pgdata, force=force, in_use=live_server_near)
            )
            for directory in planned.values():
                targets.enter_context(
                    prepared_target(directory, force=force, in_use=live_server_near)
                )
        if combine is None:
            stats, checked = restore_files(
                storage, manifest, pgdata, planned, progress or Progress(), sums, rewrite
            )
        else:
            stats, checked = restore_chain(
                storage, chain, pgdata, combine, staging, progress or Progress(), planned,
                rewrite,
            )  # fmt: skip
        pgdata.chmod(0o700)
        for directory in planned.values():
            _own_like_contents(directory)
        phases.done("download, check and extract" + (f" {len(chain)} backups, combine them"
                                                      if combine else ""))  # fmt: skip
        summed = False
        if rewrite is not None:
            rewrite.seal()
        if verify:
            summed = sums is not None and sums.match(pgdata)
            verify_data_directory(
                binaries.path("pg_verifybackup"), pgdata, manifest.backup_id, summed=summed
            )
            phases.done("verify the files (pg_verifybackup)")
        if recovery is not None and plan is not None:  # after pg_verifybackup: edits config
            config = _configure(pgdata, plan, recovery)
            phases.done("write the recovery settings")
    return RestoreResult(
        backup_id=manifest.backup_id,
        pgdata=pgdata,
        stored_bytes=sum(link.stored_bytes for link in chain),
        restored_bytes=stats.bytes,
        files=stats.files,
        seconds=time.monotonic() - started,
        verified=verify,
        summed_while_written=summed,
        previous_contents=moved,
        sha256=checked,
        plan=plan,
        config=config,
        archive_mode=recovery.archive_mode if recovery else None,
        phases=tuple(phases.seen),
        chain=tuple(link.backup_id for link in chain),
        tablespaces=tuple((t.name or str(t.oid), planned[t.oid]) for t in manifest.tablespaces),
        standby=recovery.standby if recovery else False,
        delta=rewrite.stats if rewrite else None,
    )


class _Phases:
    """How long each step of a restore took, for the evidence and the runbook."""

    def __init__(self, started: float) -> None:
        self.last = started
        self.seen: list[tuple[str, float]] = []

    def done(self, what: str) -> None:
        now = time.monotonic()
        self.seen.append((what, now - self.last))
        self.last = now


def _configure(pgdata: Path, plan: RecoveryPlan, recovery: Recovery) -> ConfigChanges:
    settings = plan.target.settings()
    settings["recovery_target_timeline"] = plan.timeline_setting
    if plan.target.kind == "latest":
        settings.pop("recovery_target_action", None)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    what = f"recover backup {plan.backup.backup_id} to {plan.target.describe()}"
    if recovery.standby:
        settings = {"recovery_target_timeline": "latest"}
        if recovery.primary_conninfo:
            settings["primary_conninfo"] = recovery.primary_conninfo
        what = f"a standby from backup {plan.backup.backup_id}, following its primary"
    return write_recovery_config(
        pgdata,
        settings,
        restore_command=recovery.restore_command,
        archive_mode=recovery.archive_mode,
        note=f"Removed by restore-drill restore of backup {plan.backup.backup_id} on {stamp}",
        comment=f"restore-drill {stamp}: {what} along timeline {plan.timeline} ({plan.why}); "
        f"archive_mode {recovery.archive_mode}",
        signal=STANDBY_SIGNAL if recovery.standby else RECOVERY_SIGNAL,
    )


def _own_like_contents(directory: Path) -> None:
    """A tablespace directory as PostgreSQL wants it: mode 0700 and, when we run as root, the
    owner its archive recorded for what is inside (its archive has no entry for itself)."""
    directory.chmod(0o700)
    if os.geteuid() != 0:
        return
    with os.scandir(directory) as entries:
        inside = [e for e in entries if e.is_dir(follow_symlinks=False)]
    if inside:
        st = inside[0].stat(follow_symlinks=False)
        os.chown(directory, st.st_uid, st.st_gid, follow_symlinks=False)


def verify_data_directory(
    pg_verifybackup: Path, pgdata: Path, backup_id: str, *, summed: bool = False
) -> None:
    """Check every restored file against the backup_manifest PostgreSQL wrote for it. `summed`:
    every file's checksum was already compared while it was written (file_checksums.py), so
    pg_verifybackup does the rest without reading the files back."""
    try:
        run([pg_verifybackup, "--quiet", *(["--skip-checksums"] if summed else []), pgdata])
    except CommandFailed as exc:
        raise VerificationFailed(
            f"pg_verifybackup rejected backup {backup_id}: {exc.message}",
            hint="the backup is damaged or incomplete; restore another one",
        ) from None
