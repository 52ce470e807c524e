"""`pin` and `unpin` for every kind of backup: the same commands under `pg`, `redis` and
`media`, each resolving ids in its own catalog."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from backup_engine.commands.context import CliContext


def pin_commands(kind: str, what: str, catalog: Callable[[], Any]) -> list[click.Command]:
    """`catalog()` returns the SnapshotKind of this kind (imported late: startup stays lean)."""

    @click.command(name="pin")
    @click.argument("backup_id", metavar="ID|latest")
    @click.option("--reason", required=True, help='Why it is kept, e.g. "legal hold, ticket 42".')
    @click.pass_obj
    def pin_backup(obj: CliContext, backup_id: str, reason: str) -> None:
        from backup_engine.pins import pin

        storage = obj.settings().open_storage()
        storage.check()
        manifest = catalog().resolve(storage, backup_id)
        made = pin(storage, kind, manifest.backup_id, reason)
        click.echo(f"pinned {what} {manifest.backup_id}: {made.reason}")

    pin_backup.help = f"Keep a {what} whatever retention says, until unpinned."

    @click.command(name="unpin")
    @click.argument("backup_id", metavar="ID")
    @click.pass_obj
    def unpin_backup(obj: CliContext, backup_id: str) -> None:
        from backup_engine.pins import unpin

        storage = obj.settings().open_storage()
        storage.check()
        if unpin(storage, kind, backup_id):
            click.echo(f"unpinned {what} {backup_id}: retention decides about it again")
        else:
            click.echo(f"{what} {backup_id} was not pinned")

    unpin_backup.help = f"Let retention decide about a pinned {what} again."
    return [pin_backup, unpin_backup]


def _base() -> Any:
    from backup_engine.postgres.catalog import BASE_BACKUPS

    return BASE_BACKUPS


def _redis() -> Any:
    from backup_engine.redis.manifest import REDIS_BACKUPS

    return REDIS_BACKUPS


def _media() -> Any:
    from backup_engine.media.manifest import MEDIA_SNAPSHOTS

    return MEDIA_SNAPSHOTS


PG_PINS = pin_commands("postgres", "base backup", _base)
REDIS_PINS = pin_commands("redis", "Redis backup", _redis)
MEDIA_PINS = pin_commands("media", "media snapshot", _media)
