"""`backup-engine pg ...`: PostgreSQL base backups, point-in-time restores and WAL archiving.

Engine modules are imported inside the commands: `pg wal-push` runs once per WAL segment and
must not pay for what the other commands need.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from backup_engine.commands.context import CliContext
from backup_engine.commands.output import (
    emit_json,
    human_bytes,
    json_option,
    progress_option,
    show_catalog,
    stopped,
)
from backup_engine.commands.pg_recovery import register_recovery_commands
from backup_engine.commands.pg_restore_cmd import register_restore_commands
from backup_engine.commands.pg_wal import register_wal_commands
from backup_engine.durations import format_duration

if TYPE_CHECKING:
    pass


@click.group()
@click.pass_context
def pg(ctx: click.Context) -> None:
    """PostgreSQL: backup, list, verify, restore, WAL archiving."""
    if ctx.obj is not None:  # one cluster of several: checked when the settings are read
        ctx.obj = replace(ctx.obj, one_cluster=True)


register_wal_commands(pg)
register_recovery_commands(pg)
register_restore_commands(pg)


@pg.command()
@click.option("--dsn", help="libpq connection string of the server (default: [postgres] dsn, PG*).")
@click.option("--label", help="Backup label recorded by PostgreSQL.")
@click.option(
    "--type",
    "backup_type",
    type=click.Choice(["full", "incr"]),
    help="full, or incr: only what changed since the previous backup (PostgreSQL 17+, "
    "summarize_wal = on) [default: [postgres] backup_type, incr turning full on full_on].",
)
@click.option(
    "--lock-wait",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    help="Seconds to wait for another base backup of this repository to finish.",
)
@progress_option
@json_option
@click.pass_obj
def backup(
    obj: CliContext,
    dsn: str | None,
    label: str | None,
    backup_type: str | None,
    lock_wait: float,
    no_progress: bool,
    json_output: bool,
) -> None:
    """Take a base backup: BASE_BACKUP over the replication protocol (pg_basebackup before
    PostgreSQL 15), streamed into the repository, compressed on the server by default."""
    from backup_engine.postgres.basebackup import take_base_backup

    settings = obj.settings(**{"postgres.dsn": dsn, "postgres.backup_type": backup_type})
    pg = settings.postgres
    manifest = take_base_backup(
        settings.open_write_storage(),
        settings.compression.get(),
        pg.backup_options(
            label=label,
            lock_wait=lock_wait,
            full_on=pg.full_on if backup_type is None else "",
        ),
        progress=obj.progress(json_output=json_output, enabled=not no_progress),
    )
    if json_output:
        emit_json(manifest.to_dict())
        return
    seconds = (manifest.stop_time - manifest.start_time).total_seconds()
    kind = f" (incremental on {manifest.parent_id})" if manifest.incremental else ""
    click.echo(
        f"backup {manifest.backup_id}{kind} complete: {human_bytes(manifest.raw_bytes)} read, "
        f"{human_bytes(manifest.stored_bytes)} stored ({manifest.compression}) in "
        f"{format_duration(seconds)}; WAL {manifest.start_lsn} -> {manifest.stop_lsn} "
        f"on timeline {manifest.timeline}"
    )


@pg.command(name="list")
@json_option
@click.pass_obj
def list_backups(obj: CliContext, json_output: bool) -> None:
    """List complete base backups and the recoverable window of each timeline."""
    from backup_engine.pins import read_pins
    from backup_engine.postgres.catalog import list_base_backups
    from backup_engine.postgres.windows import recoverable_windows

    storage = obj.settings().open_storage()
    storage.check()
    catalog = list_base_backups(storage)
    windows = recoverable_windows(storage, catalog)
    window_data = [w.to_dict() for w in windows]
    show_catalog(
        catalog,
        repository=storage.url,
        what="base backups",
        headers=("BACKUP ID", "TYPE", "STOPPED (UTC)", "STORED", "ORIGINAL", "WAL START",
                 "WAL STOP", "TLI", "PG"),
        row=lambda m: (
            m.backup_id, m.backup_type, stopped(m.stop_time), human_bytes(m.stored_bytes),
            human_bytes(m.raw_bytes), m.start_lsn, m.stop_lsn, str(m.timeline), m.pg_version,
        ),
        json_output=json_output,
        pins=read_pins(storage, "postgres"),
        extra={"recoverable_windows": window_data},
    )  # fmt: skip
    if json_output:
        return
    for window in windows:
        click.echo(window.describe())


@pg.command()
@click.argument("backup_id", metavar="ID|latest", required=False)
@click.option(
    "--archive",
    is_flag=True,
    help="Verify the WAL archive instead: no gap from the oldest backup to the newest WAL, "
    "history files readable, every object's sha256 (only what is new since the last run).",
)
@click.option("--reread", is_flag=True, help="With --archive: read every object again.")
@click.option(
    "--metrics-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="With --archive: also write when it ran and the problems found, as Prometheus "
    "textfile metrics (alert on problems > 0 or a stale run).",
)
@click.option("--hashes-only", is_flag=True, help="Only check sha256 of every object (faster).")
@click.option(
    "--scratch-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where the trial restore goes [default: system temp dir].",
)
@progress_option
@json_option
@click.pass_obj
def verify(
    obj: CliContext,
    backup_id: str | None,
    archive: bool,
    reread: bool,
    metrics_file: Path | None,
    hashes_only: bool,
    scratch_dir: Path | None,
    no_progress: bool,
    json_output: bool,
) -> None:
    """Re-read every object of a backup, check its sha256, and run pg_verifybackup on it; or,
    with --archive, check the WAL archive ahead of any restore."""
    from backup_engine.errors import UsageError
    from backup_engine.postgres.verify import verify_base_backup

    if archive and (backup_id is not None or hashes_only or scratch_dir is not None):
        raise UsageError("--archive verifies the WAL archive, not one backup",
                         hint="drop the ID, --hashes-only and --scratch-dir")  # fmt: skip
    if not archive and (reread or metrics_file is not None):
        raise UsageError("--reread and --metrics-file go with --archive",
                         hint="pg verify --archive --reread")  # fmt: skip
    if archive:
        from backup_engine.commands.pg_archive_verify import verify_archive_command

        verify_archive_command(obj, reread=reread, json_output=json_output,
                               metrics_file=metrics_file)  # fmt: skip
        return
    if backup_id is None:
        raise UsageError("which backup?", hint="pg verify ID|latest, or pg verify --archive")
    settings = obj.settings()
    result = verify_base_backup(
        settings.open_storage(),
        backup_id,
        hashes_only=hashes_only,
        scratch_dir=scratch_dir,
        bindir=settings.postgres.bindir,
        progress=obj.progress(json_output=json_output, enabled=not no_progress),
    )
    if json_output:
        emit_json(
            {
                "backup_id": result.backup_id,
                "ok": True,
                "objects_checked": list(result.objects_checked),
                "pg_verifybackup": result.pg_verifybackup,
                "seconds": round(result.seconds, 3),
            }
        )
        return
    checks = f"{len(result.objects_checked)} objects match their sha256"
    if result.pg_verifybackup:
        checks += ", pg_verifybackup passed"
    click.echo(f"backup {result.backup_id} OK: {checks} ({format_duration(result.seconds)})")
