"""`pg show`, `pg pin` / `pg unpin` and `pg delete`: one base backup, looked at and kept or
removed by hand, with the retention policy's reasons beside it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from backup_engine.commands.context import CliContext
from backup_engine.commands.output import emit_json, human_bytes, json_option
from backup_engine.durations import format_duration
from backup_engine.timefmt import iso_utc

if TYPE_CHECKING:
    from backup_engine.postgres.manifest import BaseBackupManifest
    from backup_engine.retention import Decision
    from backup_engine.storage.base import Storage


def _decision(storage: Storage, obj: CliContext, backup_id: str) -> tuple[Decision, list[Any]]:
    from backup_engine.kinds import POSTGRES

    backups = POSTGRES.catalog.list(storage).backups
    policy = obj.settings().retention.policy()
    decisions = POSTGRES.decisions(storage, backups, policy, datetime.now(UTC))
    return next(d for d in decisions if d.backup_id == backup_id), list(backups)


@click.command()
@click.argument("backup_id", metavar="ID|latest")
@json_option
@click.pass_obj
def show(obj: CliContext, backup_id: str, json_output: bool) -> None:
    """Everything known about one base backup: times, server, LSNs, the WAL it needs, sizes,
    the point-in-time window it opens, and whether retention keeps it and why."""
    from backup_engine.postgres.catalog import BASE_BACKUPS
    from backup_engine.postgres.windows import recoverable_windows

    storage = obj.settings().open_storage()
    storage.check()
    manifest = BASE_BACKUPS.resolve(storage, backup_id)
    decision, _ = _decision(storage, obj, manifest.backup_id)
    catalog = BASE_BACKUPS.list(storage)
    window = next(
        (w for w in recoverable_windows(storage, catalog) if w.timeline == manifest.timeline),
        None,
    )
    pitr_to = window.end_time if window and not window.broken else None
    by_id = {b.backup_id: b for b in catalog.backups}
    chain = [manifest]
    while chain[-1].parent_id in by_id and len(chain) <= len(by_id):
        chain.append(by_id[str(chain[-1].parent_id)])
    if json_output:
        data = manifest.to_dict()
        data.update(
            chain=[{"backup_id": b.backup_id, "backup_type": b.backup_type,
                    "stored_bytes": b.stored_bytes} for b in reversed(chain)],
            retention={"keep": decision.keep, "reason": decision.reason},
            pinned=decision.reason.startswith("pinned: "),
            pitr={"from": iso_utc(manifest.stop_time),
                  "to": iso_utc(pitr_to) if pitr_to else None},
            stored_bytes=manifest.stored_bytes,
            raw_bytes=manifest.raw_bytes,
        )  # fmt: skip
        emit_json(data)
        return
    took = format_duration((manifest.stop_time - manifest.start_time).total_seconds())
    stamp = "%Y-%m-%d %H:%M:%S"
    encryption = manifest.extra.get("encryption")
    rows = [
        ("backup", f"{manifest.backup_id} ({manifest.label})"),
        ("taken", f"{manifest.start_time:{stamp}} to {manifest.stop_time:{stamp}} UTC ({took})"),
        ("server", f"PostgreSQL {manifest.pg_version}, system {manifest.system_identifier}, "
                   f"timeline {manifest.timeline}, {manifest.source}"
                   + (" (a standby)" if manifest.from_standby else "")),
        ("taken with", _method(manifest)),
        ("tablespaces", ", ".join(f"{t.name or '?'} (oid {t.oid}) at {t.location}"
                                  for t in manifest.tablespaces) or "none besides the data "
                                                                    "directory"),
        ("type", "full" if not manifest.incremental else
                 f"incremental on {manifest.parent_id}; restores with "
                 + " + ".join(f"{b.backup_id} ({human_bytes(b.stored_bytes)})"
                              for b in reversed(chain))
                 + ("" if chain[-1].backup_type == "full" else ": PARENT MISSING")),
        ("LSN", f"{manifest.start_lsn} to {manifest.stop_lsn}"),
        ("WAL needed", f"{manifest.start_wal_file} to {manifest.stop_wal_file}"),
        ("stored", f"{human_bytes(manifest.stored_bytes)} ({human_bytes(manifest.raw_bytes)} "
                   f"before {manifest.compression}), {len(manifest.files)} objects, "
                   f"encrypted: {encryption['algorithm'] if encryption else 'no'}"),
        ("PITR", f"from {manifest.stop_time:{stamp}} to {pitr_to:{stamp}} UTC on timeline "
                 f"{manifest.timeline}" if pitr_to else "no WAL archived after it"),
        ("retention", ("kept: " if decision.keep else "expire deletes it: ") + decision.reason),
    ]  # fmt: skip
    for name, value in rows:
        click.echo(f"{name:11} {value}")


def _method(manifest: BaseBackupManifest) -> str:
    if manifest.method == "pg_basebackup":
        return "pg_basebackup, compressed here"
    where = "on the server" if manifest.compressed_on == "server" else "here"
    return f"BASE_BACKUP (replication protocol), compressed {where}"


@click.command(name="delete")
@click.argument("backup_id", metavar="ID")
@click.option("--dry-run", is_flag=True, help="Show what would be deleted; delete nothing.")
@click.pass_obj
def delete_backup(obj: CliContext, backup_id: str, dry_run: bool) -> None:
    """Delete one base backup now. Refused for the newest backup, a pinned one, and the one
    the point-in-time window starts from; WAL is left to `expire`."""
    from backup_engine.errors import UsageError
    from backup_engine.locks import repository_lock
    from backup_engine.postgres.catalog import BASE_BACKUPS

    storage = obj.settings().open_storage()
    storage.check()
    manifest = BASE_BACKUPS.resolve(storage, backup_id)
    if backup_id == "latest":
        raise UsageError("pg delete takes a backup id, not 'latest'")
    decision, _ = _decision(storage, obj, manifest.backup_id)
    protected = ("newest", "pinned: ", "needed to recover")
    if decision.reason.startswith(protected):
        raise UsageError(
            f"base backup {manifest.backup_id} is not deleted: {decision.reason}",
            hint="unpin it first (backup-engine pg unpin ID)"
            if decision.reason.startswith("pinned: ")
            else "the newest backup and the start of the PITR window are never deleted by hand",
        )
    children = [b.backup_id for b in BASE_BACKUPS.list(storage).backups
                if b.parent_id == manifest.backup_id]  # fmt: skip
    if children:
        raise UsageError(
            f"base backup {manifest.backup_id} is not deleted: incremental backup "
            f"{children[0]} builds on it",
            hint="delete the incremental backups after it first, newest first",
        )
    keys = _keys(storage, manifest)
    size = sum(storage.stat(k).size for k in keys if storage.exists(k))
    if dry_run:
        click.echo(f"would delete base backup {manifest.backup_id}: {len(keys)} objects, "
                   f"{human_bytes(size)} ({'kept' if decision.keep else 'expired'} by "
                   f"retention: {decision.reason})")  # fmt: skip
        return
    with repository_lock(storage, "postgres-delete"):
        for key in keys:  # the manifest first: never a listed backup with missing pieces
            storage.delete(key)
    click.echo(f"deleted base backup {manifest.backup_id}: {len(keys)} objects, "
               f"{human_bytes(size)} freed")  # fmt: skip


def _keys(storage: Storage, manifest: BaseBackupManifest) -> list[str]:
    from backup_engine.postgres.catalog import BASE_BACKUPS

    first = BASE_BACKUPS.manifest_key(manifest.backup_id)
    rest = [o.key for o in storage.list(BASE_BACKUPS.backup_prefix(manifest.backup_id))]
    return [first, *(k for k in rest if k != first)]
