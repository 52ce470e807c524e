"""`pg restore` and `pg restore-table`: a base backup into a data directory (to a point in time,
or as a standby), and one table from a point in time into the live database."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from backup_engine.commands.context import CliContext
from backup_engine.commands.output import emit_json, json_option, progress_option
from backup_engine.durations import format_duration

if TYPE_CHECKING:
    from backup_engine.postgres.targets import RecoveryTarget


def register_restore_commands(group: click.Group) -> None:
    group.add_command(restore)
    group.add_command(restore_table_command)


_TARGET_KINDS = ("target_time", "target_lsn", "target_xid", "target_name", "target")
_TARGET_PARAMS = (*_TARGET_KINDS, "target_action", "target_exclusive", "target_timeline")


def target_options(*, default_latest: bool) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The recovery target options, shared by restore and restore-table. The command receives
    them parsed, as `recovery_target`: None when no target is given, unless `default_latest`
    (then the end of the archive)."""

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(command)
        def parsed(*args: Any, **kwargs: Any) -> None:
            from backup_engine.postgres.targets import parse_target

            given = {name: kwargs.pop(name) for name in _TARGET_PARAMS}
            if default_latest and all(given[kind] is None for kind in _TARGET_KINDS):
                given["target"] = "latest"
            kwargs["recovery_target"] = parse_target(
                time=given["target_time"],
                lsn=given["target_lsn"],
                xid=given["target_xid"],
                name=given["target_name"],
                target=given["target"],
                action=given["target_action"],
                inclusive=not given["target_exclusive"],
                timeline=given["target_timeline"],
            )
            command(*args, **kwargs)

        options = [
            click.option(
                "--target-time", help="Recover to this time (ISO 8601; UTC unless zoned)."
            ),
            click.option("--target-lsn", help="Recover to this WAL location, e.g. 0/16B3740."),
            click.option("--target-xid", help="Recover to the commit of this transaction id."),
            click.option("--target-name", help="Recover to this restore point (pg restore-point)."),
            click.option(
                "--target",
                type=click.Choice(["immediate", "latest"]),
                help="immediate: the end of the backup; latest: the end of the WAL archive.",
            ),
            click.option(
                "--target-action",
                type=click.Choice(["promote", "pause", "shutdown"]),
                default="promote",
                show_default=True,
                help="What the server does once the target is reached.",
            ),
            click.option("--target-exclusive", is_flag=True, help="Stop just before the target."),
            click.option(
                "--target-timeline", default="latest", show_default=True, help="latest, current, N."
            ),
        ]
        for option in reversed(options):
            parsed = option(parsed)
        return parsed

    return decorate


@click.command()
@click.argument("backup_id", metavar="ID|latest|auto")
@click.option(
    "--pgdata",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Data directory to restore into; must be empty or not exist.",
)
@target_options(default_latest=False)
@click.option(
    "--archive-mode",
    type=click.Choice(["off", "preserve"]),
    default="off",
    show_default=True,
    help="off: the restored server does not archive (never into its source's repository); "
    "preserve: keep the backup's archive settings (a new primary, archiving on a new timeline).",
)
@click.option(
    "--standby",
    is_flag=True,
    help="Restore as a standby (standby.signal): it replays the archive, then streams from "
    "--primary-conninfo, and never promotes.",
)
@click.option(
    "--primary-conninfo",
    envvar="BACKUP_ENGINE_PRIMARY_CONNINFO",
    help="libpq connection string of the primary a standby streams from "
    "[$BACKUP_ENGINE_PRIMARY_CONNINFO]; never taken from the backup.",
)
@click.option(
    "--force", is_flag=True, help="Move a non-empty --pgdata aside first (never deleted)."
)
@click.option(
    "--delta",
    is_flag=True,
    help="Rewrite a stopped data directory of the same cluster in place: every file compared "
    "with the backup, only differing blocks written, files the backup lacks removed.",
)
@click.option("--no-verify", is_flag=True, help="Skip pg_verifybackup after extraction.")
@click.option(
    "--tablespace-map",
    "tablespace_map",
    multiple=True,
    metavar="NAME_OR_OID=DIR",
    help="Restore this tablespace into DIR instead of where it was (repeatable).",
)
@click.option(
    "--tablespace-map-all",
    type=click.Path(path_type=Path, file_okay=False),
    help="Restore every tablespace not mapped otherwise under DIR/<name>.",
)
@progress_option
@json_option
@click.pass_obj
def restore(
    obj: CliContext,
    backup_id: str,
    pgdata: Path,
    recovery_target: RecoveryTarget | None,
    archive_mode: str,
    standby: bool,
    primary_conninfo: str | None,
    force: bool,
    delta: bool,
    no_verify: bool,
    tablespace_map: tuple[str, ...],
    tablespace_map_all: Path | None,
    no_progress: bool,
    json_output: bool,
) -> None:
    """Restore a base backup into a data directory, set up to recover to one point.

    Without a target the server recovers to the end of the WAL archive (latest), or to the end
    of the backup when no WAL follows it. The timeline, the backup (auto: the newest that ends
    before the target), the window and the archive's completeness are checked before anything
    is written; an ambiguous target is refused. The backup's own recovery settings are
    removed, and the server always ends recovery on a new timeline. Start PostgreSQL on it as
    usual and follow it with `pg wait-recovery`. Tablespaces go back where they were unless
    mapped; every destination must be empty (or moved aside with --force). With --standby it
    becomes a replica instead: no target, standby.signal, the primary the operator names.
    With --delta the destination may hold the same cluster, stopped (a replica that fell
    behind, a damaged primary): only what differs is written, so the repair takes minutes.
    """
    from backup_engine.commands.restore_report import restore_summary
    from backup_engine.postgres.recovery_config import fetch_command
    from backup_engine.postgres.restore import restore_base_backup
    from backup_engine.postgres.tablespaces import TablespaceMapping
    from backup_engine.postgres.targets import Recovery

    settings = obj.settings()
    storage = settings.open_storage()
    command = fetch_command(storage.url, settings.source)
    result = restore_base_backup(
        storage,
        backup_id,
        pgdata,
        recovery=Recovery(command, recovery_target, archive_mode, standby, primary_conninfo),
        force=force,
        delta=delta,
        verify=not no_verify,
        bindir=settings.postgres.bindir,
        progress=obj.progress(json_output=json_output, enabled=not no_progress),
        staging=Path(settings.postgres.staging_dir) if settings.postgres.staging_dir else None,
        tablespaces=TablespaceMapping.parse(
            tablespace_map, tablespace_map_all.absolute() if tablespace_map_all else None
        ),
    )
    summary = restore_summary(result)
    if json_output:
        emit_json(summary.data)
        return
    for line in summary.lines:
        click.echo(line)


@click.command(name="restore-table")
@click.argument("backup_id", metavar="[ID|auto]", default="auto")
@click.option("--table", required=True, help="The table to bring back, as schema.name.")
@click.option("--into", "into_dsn", required=True, help="Connection string of the live database.")
@click.option(
    "--as", "as_name", help="Name of the restored copy [default: <name>_restored_<time>]."
)
@click.option("--replace", "replace_rows", is_flag=True, help="Replace the live table's rows.")
@target_options(default_latest=True)
@click.option(
    "--scratch-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where the temporary side cluster lives [default: system temp dir].",
)
@json_option
@click.pass_obj
def restore_table_command(
    obj: CliContext,
    backup_id: str,
    table: str,
    into_dsn: str,
    as_name: str | None,
    replace_rows: bool,
    recovery_target: RecoveryTarget | None,
    scratch_dir: Path | None,
    json_output: bool,
) -> None:
    """Restore one table from a point in time into the live database, beside the original.

    A temporary side cluster is restored and recovered to the target (default: the end of the
    archive), the table is copied from it into the live database (pg_dump | pg_restore) under a
    new name, and the side cluster is deleted. The damaged table is untouched unless --replace
    is given (superuser; its rows are swapped in one transaction).
    """
    from backup_engine.servers import LocalPostgresBackend
    from backup_engine.table_restore import restore_table

    assert recovery_target is not None  # default_latest
    settings = obj.settings()
    with LocalPostgresBackend(bindir=settings.postgres.bindir, base_dir=scratch_dir) as side:
        result = restore_table(
            settings.open_storage(),
            side,
            table=table,
            target=recovery_target,
            into_dsn=into_dsn,
            as_name=as_name,
            replace_rows=replace_rows,
            ref=backup_id,
            bindir=settings.postgres.bindir,
            config_file=settings.source,
        )
    if json_output:
        emit_json(
            {
                "table": result.table,
                "restored_as": result.restored_as,
                "rows": result.rows,
                "backup_id": result.backup_id,
                "replaced": result.replaced,
                "reached_lsn": result.recovery.reached_lsn,
                "seconds": round(result.seconds, 3),
            }
        )
        return
    click.echo(
        f"restored {result.table} as it was at {recovery_target.describe()} into "
        f"{result.restored_as}: {result.rows} rows, from backup {result.backup_id}, "
        f"in {format_duration(result.seconds)}"
    )
