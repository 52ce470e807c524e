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
