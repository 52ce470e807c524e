"""`pg restore-point` and `pg wait-recovery`: marking a point to recover to, and following a
restored server's recovery to its end."""

from __future__ import annotations

from pathlib import Path

import click

from backup_engine.commands.context import CliContext
from backup_engine.commands.output import emit_json, json_option


def register_recovery_commands(group: click.Group) -> None:
    group.add_command(restore_point)
    group.add_command(wait_recovery)


@click.command(name="restore-point")
@click.argument("name")
@click.option("--dsn", help="libpq connection string of the server (default: [postgres] dsn, PG*).")
@json_option
@click.pass_obj
def restore_point(obj: CliContext, name: str, dsn: str | None, json_output: bool) -> None:
    """Create a named restore point on the server and record it in the repository."""
    from dataclasses import asdict

    from backup_engine.postgres.restore_points import create_restore_point

    settings = obj.settings(**{"postgres.dsn": dsn})
    point = create_restore_point(settings.open_storage(), settings.postgres.dsn, name)
    if json_output:
        emit_json(asdict(point))
        return
    click.echo(f"restore point {point.name} at LSN {point.lsn} ({point.time}), recorded")


@click.command(name="wait-recovery")
@click.option("--dsn", help="libpq connection string of the recovering server.")
@click.option(
    "--pgdata",
    type=click.Path(path_type=Path, file_okay=False),
    help="Its data directory: a server that stops is noticed at once, its log read for why.",
)
@click.option(
    "--log",
    "log_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Its log file (pg_ctl --log); default: what current_logfiles names.",
)
@click.option("--timeout", type=float, default=24 * 3600, show_default=True, help="Seconds.")
@json_option
@click.pass_obj
def wait_recovery(
    obj: CliContext,
    dsn: str | None,
    pgdata: Path | None,
    log_file: Path | None,
    timeout: float,
    json_output: bool,
) -> None:
    """Wait until a restored server has finished (or paused) recovery; report where it stopped.

    A server that stops during recovery is reported with PostgreSQL's reason and a remedy.
    """
    from backup_engine.postgres.recovery import wait_for_connected_recovery

    settings = obj.settings(**{"postgres.dsn": dsn})
    outcome = wait_for_connected_recovery(
        settings.postgres.dsn, timeout=timeout, pgdata=pgdata, log_file=log_file
    )
    if json_output:
        emit_json(
            {
                "state": outcome.state,
                "reached_lsn": outcome.reached_lsn,
                "last_transaction_time": outcome.last_transaction_time,
                "timeline": outcome.timeline,
                "seconds": round(outcome.seconds, 3),
            }
        )
        return
    when = outcome.last_transaction_time.isoformat() if outcome.last_transaction_time else "n/a"
    click.echo(
        f"recovery {outcome.state} at LSN {outcome.reached_lsn} on timeline {outcome.timeline}; "
        f"last transaction replayed committed at {when}"
    )
