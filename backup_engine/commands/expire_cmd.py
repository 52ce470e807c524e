"""`expire`: the retention policy applied to each repository (expire.py decides, this says
what it did), one after the other when there are two."""

from __future__ import annotations

from typing import Any

import click

from backup_engine.commands.context import CliContext
from backup_engine.commands.output import emit_json, emit_table, human_bytes


@click.command()
@click.option("--dry-run", is_flag=True, help="Show what would be deleted and why; delete nothing.")
@click.option("--json", "json_output", is_flag=True, help="Print JSON for machines.")
@click.pass_obj
def expire(obj: CliContext, dry_run: bool, json_output: bool) -> None:
    """Delete backups, WAL and media objects the retention policy no longer keeps; with a
    second repository, in each with its own retention ([retention.2]), unless --repo N."""
    from backup_engine.errors import BackupEngineError

    scopes = obj.settings().each_repository()
    if len(scopes) == 1:
        plan, deleted = _expire_one(scopes[0], dry_run)
        if json_output:
            emit_json(_expire_json(plan, deleted, dry_run))
        else:
            _expire_table(plan, deleted, dry_run)
        return
    documents, failed = [], []
    for scope in scopes:  # one repository failing never keeps the other from being expired
        where = {"repository": scope.selected, "url": scope.repository.url}
        if not json_output:
            click.echo(f"repository {scope.selected} ({scope.repository.url}):")
        try:
            plan, deleted = _expire_one(scope, dry_run)
        except BackupEngineError as exc:
            failed.append(f"repository {scope.selected}: {exc.one_line()}")
            documents.append({**where, "error": exc.one_line()})
            if not json_output:
                click.echo(f"  not expired: {exc.one_line()}")
            continue
        documents.append({**where, **_expire_json(plan, deleted, dry_run)})
        if not json_output:
            _expire_table(plan, deleted, dry_run)
    if json_output:
        emit_json({"repositories": documents})
    if failed:
        raise BackupEngineError("expire failed in " + "; ".join(failed))


def _expire_one(settings: Any, dry_run: bool) -> tuple[Any, int]:
    from datetime import UTC, datetime

    from backup_engine.expire import apply_expire, plan_expire
    from backup_engine.media.prune import pruning

    storage = settings.open_storage()
    storage.check()
    policy = settings.retention.policy()
    if dry_run:
        return plan_expire(storage, policy, datetime.now(UTC)), 0
    with pruning(storage) as no_media_backup_running:
        plan = plan_expire(storage, policy, datetime.now(UTC), prune_packs=no_media_backup_running)
        return plan, apply_expire(storage, plan)


def _expire_json(plan: Any, deleted: int, dry_run: bool) -> dict[str, Any]:
    return {
        "dry_run": dry_run,
        "objects_deleted": deleted,
        "bytes_freed": plan.bytes_freed,
        "items": [
            {"kind": i.kind, "name": i.name, "keep": i.keep, "reason": i.reason, "bytes": i.bytes}
            for i in plan.items
        ],
    }


def _expire_table(plan: Any, deleted: int, dry_run: bool) -> None:
    rows = [
        (i.kind, i.name, "keep" if i.keep else ("would delete" if dry_run else "deleted"), i.reason)
        for i in plan.items
        if not (i.keep and i.kind in ("wal", "media-object", "media-pack"))
    ]
    if rows:
        emit_table(("KIND", "NAME", "ACTION", "WHY"), rows)
    verb = "would free" if dry_run else "freed"
    click.echo(
        f"{len(plan.deletions)} items to delete, {verb} {human_bytes(plan.bytes_freed)}"
        + ("" if dry_run else f" ({deleted} objects deleted)")
    )
