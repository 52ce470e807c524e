"""`backup-engine pg ...`: PostgreSQL base backups, their listing, verification and restore."""

from __future__ import annotations

from pathlib import Path

import click

from backup_engine.commands.context import CliContext
from backup_engine.commands.output import emit_json, emit_table, human_bytes
from backup_engine.durations import format_duration
from backup_engine.postgres.basebackup import BaseBackupOptions, take_base_backup
from backup_engine.postgres.catalog import list_base_backups
from backup_engine.postgres.restore import restore_base_backup
from backup_engine.postgres.verify import verify_base_backup

json_option = click.option("--json", "json_output", is_flag=True, help="Print JSON for machines.")


@click.group()
def pg() -> None:
    """PostgreSQL base backups: backup, list, verify, restore."""


@pg.command()
@click.option("--dsn", help="libpq connection string of the server (default: [postgres] dsn, PG*).")
@click.option("--label", help="Backup label recorded by PostgreSQL.")
@click.option("--no-progress", is_flag=True, help="Do not draw a progress bar.")
@json_option
@click.pass_obj
def backup(
    obj: CliContext, dsn: str | None, label: str | None, no_progress: bool, json_output: bool
) -> None:
    """Take a base backup (pg_basebackup, streamed and compressed into the repository)."""
    settings = obj.settings(**{"postgres.dsn": dsn})
    manifest = take_base_backup(
        settings.open_storage(),
        settings.compression.get(),
        BaseBackupOptions(dsn=settings.postgres.dsn, bindir=settings.postgres.bindir, label=label),
        progress=obj.progress(json_output=json_output, enabled=not no_progress),
    )
    if json_output:
        emit_json(manifest.to_dict())
        return
    seconds = (manifest.stop_time - manifest.start_time).total_seconds()
    click.echo(
        f"backup {manifest.backup_id} complete: {human_bytes(manifest.raw_bytes)} read, "
        f"{human_bytes(manifest.stored_bytes)} stored ({manifest.compression}) in "
        f"{format_duration(seconds)}; WAL {manifest.start_lsn} -> {manifest.stop_lsn} "
        f"on timeline {manifest.timeline}"
    )


@pg.command(name="list")
@json_option
@click.pass_obj
def list_backups(obj: CliContext, json_output: bool) -> None:
    """List complete base backups, oldest first."""
    storage = obj.settings().open_storage()
    storage.check()
    catalog = list_base_backups(storage)
    if json_output:
        emit_json(
            {
                "repository": storage.url,
                "backups": [m.to_dict() for m in catalog.backups],
                "incomplete": [
                    {"backup_id": i.backup_id, "reason": i.reason} for i in catalog.incomplete
                ],
            }
        )
        return
    if not catalog.backups:
        click.echo(f"no complete base backups in {storage.url}")
    else:
        emit_table(
            (
                "BACKUP ID",
                "STOPPED (UTC)",
                "STORED",
                "ORIGINAL",
                "WAL START",
                "WAL STOP",
                "TLI",
                "PG",
            ),
            [
                (
                    m.backup_id,
                    m.stop_time.strftime("%Y-%m-%d %H:%M:%S"),
                    human_bytes(m.stored_bytes),
                    human_bytes(m.raw_bytes),
                    m.start_lsn,
                    m.stop_lsn,
                    str(m.timeline),
                    m.pg_version,
                )
                for m in catalog.backups
            ],
        )
    for item in catalog.incomplete:
        click.echo(f"not restorable: {item.backup_id} ({item.reason})", err=True)


@pg.command()
@click.argument("backup_id", metavar="ID|latest")
@click.option("--hashes-only", is_flag=True, help="Only check sha256 of every object (faster).")
@click.option(
    "--scratch-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where the trial restore goes [default: system temp dir].",
)
@click.option("--no-progress", is_flag=True, help="Do not draw a progress bar.")
@json_option
@click.pass_obj
def verify(
    obj: CliContext,
    backup_id: str,
    hashes_only: bool,
    scratch_dir: Path | None,
    no_progress: bool,
    json_output: bool,
) -> None:
    """Re-read every object of a backup, check its sha256, and run pg_verifybackup on it."""
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


@pg.command()
@click.argument("backup_id", metavar="ID|latest")
@click.option(
    "--pgdata",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Data directory to restore into; must be empty or not exist.",
)
@click.option(
    "--force", is_flag=True, help="Move a non-empty --pgdata aside first (never deleted)."
)
@click.option("--no-verify", is_flag=True, help="Skip pg_verifybackup after extraction.")
@click.option("--no-progress", is_flag=True, help="Do not draw a progress bar.")
@json_option
@click.pass_obj
def restore(
    obj: CliContext,
    backup_id: str,
    pgdata: Path,
    force: bool,
    no_verify: bool,
    no_progress: bool,
    json_output: bool,
) -> None:
    """Restore a base backup into a data directory that PostgreSQL can start from."""
    settings = obj.settings()
    result = restore_base_backup(
        settings.open_storage(),
        backup_id,
        pgdata,
        force=force,
        verify=not no_verify,
        bindir=settings.postgres.bindir,
        progress=obj.progress(json_output=json_output, enabled=not no_progress),
    )
    if json_output:
        emit_json(
            {
                "backup_id": result.backup_id,
                "pgdata": str(result.pgdata),
                "files": result.files,
                "restored_bytes": result.restored_bytes,
                "stored_bytes": result.stored_bytes,
                "verified": result.verified,
                "seconds": round(result.seconds, 3),
                "previous_contents": str(result.previous_contents)
                if result.previous_contents
                else None,
            }
        )
        return
    if result.previous_contents:
        click.echo(f"previous contents of {pgdata} moved to {result.previous_contents}")
    verified = "verified by pg_verifybackup" if result.verified else "NOT verified"
    click.echo(
        f"restored backup {result.backup_id} into {result.pgdata}: {result.files} files, "
        f"{human_bytes(result.restored_bytes)}, {verified}, in {format_duration(result.seconds)}"
    )
    click.echo(f"start it with: pg_ctl --pgdata {result.pgdata} start")
