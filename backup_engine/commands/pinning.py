"""`pin` and `unpin` for every kind of backup (the same commands under `pg`, `redis` and
`media`, each resolving ids in its own catalog), and `show` and `delete` for Redis and media
snapshots (PostgreSQL's, which know about WAL and the PITR window, are in pg_manage.py)."""

from __future__ import annotations

from typing import Any

import click

from backup_engine.commands.context import CliContext
from backup_engine.kinds import MEDIA, POSTGRES, REDIS, BackupKind


def pin_commands(kind: BackupKind) -> list[click.Command]:
    """`pin` and `unpin` under the kind's group."""
    what = kind.what

    @click.command(name="pin")
    @click.argument("backup_id", metavar="ID|latest")
    @click.option("--reason", required=True, help='Why it is kept, e.g. "legal hold, ticket 42".')
    @click.pass_obj
    def pin_backup(obj: CliContext, backup_id: str, reason: str) -> None:
        from backup_engine.pins import pin

        storage = obj.settings().open_storage()
        storage.check()
        manifest = kind.catalog.resolve(storage, backup_id)
        made = pin(storage, kind.name, manifest.backup_id, reason)
        click.echo(f"pinned {what} {manifest.backup_id}: {made.reason}")
        _legal_hold(storage, kind.catalog.backup_prefix(manifest.backup_id), True)

    pin_backup.help = f"Keep a {what} whatever retention says, until unpinned."

    @click.command(name="unpin")
    @click.argument("backup_id", metavar="ID")
    @click.pass_obj
    def unpin_backup(obj: CliContext, backup_id: str) -> None:
        from backup_engine.pins import unpin

        storage = obj.settings().open_storage()
        storage.check()
        if unpin(storage, kind.name, backup_id):
            click.echo(f"unpinned {what} {backup_id}: retention decides about it again")
            _legal_hold(storage, kind.catalog.backup_prefix(backup_id), False)
        else:
            click.echo(f"{what} {backup_id} was not pinned")

    unpin_backup.help = f"Let retention decide about a pinned {what} again."
    return [pin_backup, unpin_backup]


def _legal_hold(storage: Any, prefix: str, on: bool) -> None:
    from backup_engine.pins import hold

    keys = [info.key for info in storage.list(prefix)]
    problem = hold(storage, keys, on)
    if problem is not None:
        click.echo(f"warning: {problem}", err=True)
    elif storage.object_lock is not None:
        state = "under legal hold" if on else "legal hold lifted"
        click.echo(f"{len(keys)} objects {state} (Object Lock)")


def snapshot_commands(kind: BackupKind) -> list[click.Command]:
    """`show` and `delete` for a kind kept `[retention] <kind>_days` (Redis, media)."""
    what = kind.what

    def decision(obj: CliContext, storage: Any, backup_id: str) -> Any:
        from datetime import UTC, datetime

        backups = kind.catalog.list(storage).backups
        policy = obj.settings().retention.policy()
        decisions = kind.decisions(storage, backups, policy, datetime.now(UTC))
        return next(d for d in decisions if d.backup_id == backup_id)

    @click.command(name="show")
    @click.argument("backup_id", metavar="ID|latest")
    @click.option("--json", "json_output", is_flag=True, help="Print JSON for machines.")
    @click.pass_obj
    def show(obj: CliContext, backup_id: str, json_output: bool) -> None:
        from backup_engine.commands.output import emit_json

        storage = obj.settings().open_storage()
        storage.check()
        manifest = kind.catalog.resolve(storage, backup_id)
        kept = decision(obj, storage, manifest.backup_id)
        data = manifest.to_dict()
        data.pop("entries", None)  # a media snapshot's list of files can be huge
        data["retention"] = {"keep": kept.keep, "reason": kept.reason}
        if json_output:
            emit_json(data)
            return
        for name in ("backup_id", "start_time", "stop_time", "source", "compression"):
            if name in data:
                click.echo(f"{name:12} {data[name]}")
        for name in ("file_count", "total_bytes", "stored_bytes", "new_bytes"):
            if hasattr(manifest, name):
                click.echo(f"{name:12} {getattr(manifest, name)}")
        click.echo(f"{'retention':12} " + ("kept: " if kept.keep else "expire deletes it: ")
                   + kept.reason)  # fmt: skip

    show.help = f"One {what}: what its manifest records, and whether retention keeps it."

    @click.command(name="delete")
    @click.argument("backup_id", metavar="ID")
    @click.option("--dry-run", is_flag=True, help="Show what would be deleted; delete nothing.")
    @click.pass_obj
    def delete(obj: CliContext, backup_id: str, dry_run: bool) -> None:
        from backup_engine.errors import UsageError

        storage = obj.settings().open_storage()
        storage.check()
        kinds = kind.catalog
        if backup_id == "latest":
            raise UsageError(f"{kind.command} delete takes a backup id, not 'latest'")
        manifest = kinds.resolve(storage, backup_id)
        kept = decision(obj, storage, manifest.backup_id)
        if kept.reason.startswith(("newest", "pinned: ")):
            raise UsageError(f"{what} {manifest.backup_id} is not deleted: {kept.reason}",
                             hint=f"backup-engine {kind.command} unpin ID first"
                             if "pinned" in kept.reason
                             else "the newest one is never deleted by hand")  # fmt: skip
        first = kinds.manifest_key(manifest.backup_id)
        rest = [o.key for o in storage.list(kinds.backup_prefix(manifest.backup_id))]
        keys = [first, *(k for k in rest if k != first)]
        if dry_run:
            click.echo(f"would delete {what} {manifest.backup_id}: {len(keys)} objects")
            return
        for key in keys:  # the manifest first: never a listed snapshot with missing pieces
            storage.delete(key)
        shared = " (shared content goes at the next expire)" if kind is MEDIA else ""
        click.echo(f"deleted {what} {manifest.backup_id}: {len(keys)} objects{shared}")

    delete.help = (f"Delete one {what} now (never the newest or a pinned one); content other "
                   "snapshots share stays.")  # fmt: skip
    return [show, delete]


PG_PINS = pin_commands(POSTGRES)
REDIS_COMMANDS = [*pin_commands(REDIS), *snapshot_commands(REDIS)]
MEDIA_COMMANDS = [*pin_commands(MEDIA), *snapshot_commands(MEDIA)]
