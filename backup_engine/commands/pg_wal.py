"""`pg wal-push` and `pg wal-fetch`: what PostgreSQL's archive_command and restore_command call.

Exit codes matter more than output here. wal-push exits non-zero on any failure, so PostgreSQL
keeps the segment and retries. wal-fetch exits 5 when the file is not in the archive (the
normal end of recovery) and 126 on any other failure: PostgreSQL treats exit codes above 125 as
fatal and stops recovery, instead of taking "I could not fetch it" for "there is no more WAL"
and promoting at the wrong point.
"""

from __future__ import annotations

from pathlib import Path

import click

from backup_engine.commands.context import CliContext
from backup_engine.errors import BackupEngineError

WAL_FETCH_FATAL = 126


class WalFetchFailed(BackupEngineError):
    exit_code = WAL_FETCH_FATAL


def register_wal_commands(group: click.Group) -> None:
    group.add_command(wal_push)
    group.add_command(wal_fetch)
    group.add_command(wal_stream)


@click.command(name="wal-push")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@click.pass_obj
def wal_push(obj: CliContext, path: Path) -> None:
    """Archive one WAL file (archive_command = 'backup-engine pg wal-push %p')."""
    from backup_engine.postgres.wal import wal_push as push

    settings = obj.settings()
    result = push(settings.open_storage(), path, settings.compression.get())
    state = "already archived (identical)" if result.already_archived else "archived"
    click.echo(
        f"{result.name} {state}: {result.raw_size} -> {result.stored_size} bytes "
        f"in {result.seconds:.2f} s",
        err=True,  # PostgreSQL logs archive_command's stderr; stdout would be lost
    )


@click.command(name="wal-fetch")
@click.argument("name")
@click.argument("destination", type=click.Path(path_type=Path, dir_okay=False))
@click.pass_obj
def wal_fetch(obj: CliContext, name: str, destination: Path) -> None:
    """Fetch one WAL file (restore_command = 'backup-engine pg wal-fetch %f %p')."""
    from backup_engine.postgres.wal import WalNotFound
    from backup_engine.postgres.wal import wal_fetch as fetch

    try:
        settings = obj.settings()
        result = fetch(settings.open_storage(), name, destination, settings.compression.get())
    except WalNotFound:
        raise
    except BackupEngineError as exc:
        raise WalFetchFailed(f"wal-fetch {name}: {exc.message}", hint=exc.hint) from exc
    except Exception as exc:  # any surprise must stop recovery, not end it
        raise WalFetchFailed(f"wal-fetch {name}: {type(exc).__name__}: {exc}") from exc
    if result.partial:
        click.echo(f"{name} served from its .partial copy (wal-stream)", err=True)


@click.command(name="wal-stream")
@click.option("--dsn", help="libpq connection string (a user with REPLICATION).")
@click.option("--slot", default="restore_drill", show_default=True, help="Replication slot name.")
@click.option("--no-create-slot", is_flag=True, help="Use an existing slot; do not create it.")
@click.option(
    "--spool-dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Local directory pg_receivewal writes into (keep it on durable storage).",
)
@click.option(
    "--partial-interval",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds between uploads of the segment being written (bounds the repository's RPO).",
)
@click.option("--retry-delay", type=float, default=5.0, show_default=True, help="Seconds.")
@click.pass_obj
def wal_stream(
    obj: CliContext,
    dsn: str | None,
    slot: str,
    no_create_slot: bool,
    spool_dir: Path,
    partial_interval: float,
    retry_delay: float,
) -> None:
    """Stream WAL with pg_receivewal and ship it to the repository, until stopped.

    For servers where archive_command cannot be set, or to get a lower RPO: archive_command
    ships a segment when it is full or archive_timeout expires; wal-stream receives every
    record as it is written and uploads the open segment every --partial-interval seconds.
    """
    import signal
    import threading

    from backup_engine.postgres.walstream import WalStreamer

    settings = obj.settings(**{"postgres.dsn": dsn})
    streamer = WalStreamer(
        settings.open_storage(),
        dsn=settings.postgres.dsn,
        slot=slot,
        spool_dir=spool_dir,
        codec=settings.compression.get(),
        partial_interval=partial_interval,
        bindir=settings.postgres.bindir,
    )
    if not no_create_slot:
        streamer.create_slot()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    click.echo(f"streaming WAL from slot {slot} into {streamer.storage.url}", err=True)
    while not stop.is_set():
        stats = streamer.run(stop)
        if not stop.is_set():
            click.echo(
                f"pg_receivewal stopped (shipped {stats.segments_shipped} segments so far); "
                f"reconnecting in {retry_delay:.0f} s",
                err=True,
            )
            stop.wait(retry_delay)
    click.echo(
        f"stopped: {streamer.stats.segments_shipped} segments and "
        f"{streamer.stats.partial_uploads} partial uploads shipped",
        err=True,
    )
