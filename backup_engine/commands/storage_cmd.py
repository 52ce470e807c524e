"""`backup-engine storage ...`: set up the backup store safely, check it, and print IAM policies."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from backup_engine.commands.context import CliContext
from backup_engine.commands.output import emit_json, human_bytes

if TYPE_CHECKING:
    from backup_engine.config import Settings
    from backup_engine.storage.admin import BucketAdmin, StorePolicy


@click.group()
def storage() -> None:
    """The backup store: init, check, policy."""


def _admin_and_policy(
    obj: CliContext, lock_days: int | None, lock_mode: str | None
) -> tuple[Settings, BucketAdmin, StorePolicy]:
    from backup_engine.storage.admin import BucketAdmin, StorePolicy, require_s3

    settings = obj.settings()
    admin = BucketAdmin(require_s3(settings.open_storage()))
    repo = settings.repository
    days, mode = _bucket_lock(settings, lock_days, lock_mode)
    policy = StorePolicy(repo.noncurrent_days, repo.sse or "AES256", repo.kms_key_id, days, mode)
    return settings, admin, policy


def _bucket_lock(settings: Settings, days: int | None, mode: str | None) -> tuple[int | None, str]:
    """The bucket's default retention: asked for with --object-lock(-days), or implied by
    `[repository] object_lock`; never shorter than the plan keeps backups (the default applies
    to whatever is written without a retention of its own)."""
    from backup_engine.errors import UsageError
    from backup_engine.storage.object_lock import plan_lock

    explicit = mode is not None
    mode = (mode or settings.repository.object_lock or "governance").upper()
    plan = plan_lock(mode, settings.retention.policy(), 0)
    if days is None and (explicit or settings.repository.object_lock):
        days = plan.longest
    if days is None:
        return None, mode
    if days < plan.longest:
        raise UsageError(
            f"a {days}-day Object Lock is shorter than the retention plan keeps backups "
            f"({plan.longest} days): they could be deleted while still kept",
            hint=f"use --object-lock-days {plan.longest} or more, or shorten [retention]",
        )
    return days, mode


def _local_repository(obj: CliContext, lock: int | str | None, *, make: bool) -> bool:
    """A file:// repository: its directory made (0700) when asked, and whose it is said before
    the first segment (every command that writes to it must run as that user). False for S3."""
    from backup_engine.errors import UsageError
    from backup_engine.storage.local import LocalStorage, describe_owner

    storage = obj.settings().open_storage()
    local = getattr(storage, "inner", storage)  # under client-side encryption
    if not isinstance(local, LocalStorage):
        return False
    if lock:
        raise UsageError("Object Lock is a feature of S3 buckets, not of a file:// repository")
    if make and not local.root.exists():
        local.root.mkdir(mode=0o700, parents=True)
        click.echo(f"made {local.root} (mode 0700)")
    local.check()  # missing, unreadable, or another user's: one line, non-zero exit
    click.echo(f"{local.url}: {describe_owner(local.root)}")
    return True


_LOCK_MODES = click.Choice(["governance", "compliance"], case_sensitive=False)


@storage.command()
@click.option("--dry-run", is_flag=True, help="Print the changes; change nothing.")
@click.option(
    "--object-lock",
    "object_lock_mode",
    type=_LOCK_MODES,
    help="Create the bucket with Object Lock (new buckets only); default: [repository] "
    "object_lock. Its default retention covers the retention plan.",
)
@click.option(
    "--object-lock-days",
    type=click.IntRange(min=1),
    help="Default retention of the bucket (default: the longest the plan keeps anything).",
)
@click.option("--object-lock-mode", "object_lock_mode", type=_LOCK_MODES, hidden=True)
@click.pass_obj
def init(
    obj: CliContext, dry_run: bool, object_lock_days: int | None, object_lock_mode: str | None
) -> None:
    """Create or configure the bucket: versioning, default encryption, lifecycle, Object Lock.
    For a file:// repository: make its directory (0700) and say whose it is."""
    if _local_repository(obj, object_lock_days or object_lock_mode, make=not dry_run):
        return
    settings, admin, policy = _admin_and_policy(obj, object_lock_days, object_lock_mode)
    changes = admin.drift(policy)
    for change in changes:
        verb = "would set" if dry_run else "setting"
        click.echo(f"{verb} {change.what}: {change.current} -> {change.wanted}")
    if not changes:
        click.echo(f"{admin.storage.url}: already configured, nothing to change")
        return
    if not dry_run:
        admin.apply(policy, changes, region=settings.repository.region)
        remaining = admin.drift(policy)
        if remaining:
            raise click.ClickException(
                f"still different after init: {', '.join(c.what for c in remaining)}"
            )
        click.echo(f"{admin.storage.url}: configured")


@storage.command(name="check")
@click.option("--object-lock", "object_lock_mode", type=_LOCK_MODES, help="Expect Object Lock.")
@click.option(
    "--object-lock-days", type=click.IntRange(min=1), help="Expect this default retention."
)
@click.option("--object-lock-mode", "object_lock_mode", type=_LOCK_MODES, hidden=True)
@click.pass_obj
def check_store(
    obj: CliContext, object_lock_days: int | None, object_lock_mode: str | None
) -> None:
    """Report drift from the configuration `storage init` sets; exit 1 if anything differs."""
    if _local_repository(obj, object_lock_days or object_lock_mode, make=False):
        return
    _, admin, policy = _admin_and_policy(obj, object_lock_days, object_lock_mode)
    changes = admin.drift(policy)
    if not changes:
        locked = policy.object_lock_days
        lock = f", Object Lock ({policy.object_lock_mode}, {locked} days)" if locked else ""
        click.echo(f"{admin.storage.url}: versioning, encryption, lifecycle{lock} as configured")
        return
    for change in changes:
        click.echo(f"drift: {change.what} is {change.current}, should be {change.wanted}")
    raise SystemExit(1)


@storage.command()
@click.option("--role", required=True, type=click.Choice(["backup", "restore", "expire"]))
@click.pass_obj
def policy(obj: CliContext, role: str) -> None:
    """Print the least-privilege IAM policy JSON for one role on this repository."""
    from backup_engine.storage.admin import require_s3
    from backup_engine.storage.iam import role_policy

    store = require_s3(obj.settings().open_storage())
    click.echo(json.dumps(role_policy(role, store.bucket, store.prefix), indent=2))


@storage.command()
@click.argument("name", metavar="NAME")
@click.pass_obj
def unlock(obj: CliContext, name: str) -> None:
    """Remove a backup lock left by a process that is gone (e.g. postgres-base, redis)."""
    from backup_engine.locks import lock_key

    store = obj.settings().open_storage()
    key = lock_key(name)
    if not store.exists(key):
        click.echo(f"no lock {key} in {store.url}")
        return
    holder = store.get_bytes(key).decode(errors="replace")
    store.delete(key)
    click.echo(f"removed {key} (was held by {holder})")


@storage.command()
@click.option("--to", "to", required=True, metavar="TIME", help="e.g. 2026-12-06T03:00Z")
@click.option("--dry-run", is_flag=True, help="Print what would change; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@click.pass_obj
def rollback(obj: CliContext, to: str, dry_run: bool, as_json: bool) -> None:
    """Put the repository back as it was at TIME, from the bucket's versions: undo deletions
    and overwrites made since (ransomware, a wrong script). Needs versioning, and credentials
    that may list versions and remove delete markers; stop backups and archiving first."""
    from backup_engine.errors import UsageError
    from backup_engine.locks import holders
    from backup_engine.storage.admin import require_s3
    from backup_engine.storage.rollback import apply_rollback, plan_rollback
    from backup_engine.timefmt import iso_utc, parse_utc

    try:
        when = parse_utc(to)
    except ValueError:
        raise UsageError(
            f"--to {to!r} is not a time with a zone", hint="e.g. 2026-12-06T03:00Z"
        ) from None
    store = require_s3(obj.settings().open_storage())
    running = holders(store, "")
    if running and not dry_run:
        raise UsageError(
            f"{', '.join(running)} running on {store.url}: a rollback would race it",
            hint="stop backups (and archive_command) first; a lock left by a host that is "
            "gone is removed with: backup-engine storage unlock NAME",
        )
    steps = plan_rollback(store, when)
    if not dry_run:
        apply_rollback(store, steps)
    if as_json:
        emit_json({"to": iso_utc(when), "applied": not dry_run,
                   "steps": [{"key": s.key, "action": s.action, "version": s.version_id,
                              "markers_removed": list(s.markers)} for s in steps]})  # fmt: skip
        return
    for step in steps:
        click.echo(("would " if dry_run else "") + step.describe())
    counts = {a: sum(1 for s in steps if s.action == a) for a in ("undelete", "revert", "hide")}
    summary = ", ".join(f"{n} {a}" for a, n in counts.items())
    verb = "would change" if dry_run else "changed"
    click.echo(f"{store.url} as at {iso_utc(when)}: {verb} {len(steps)} keys ({summary})")


@storage.command()
@click.option(
    "--from",
    "source",
    type=click.IntRange(1, 2),
    default=1,
    show_default=True,
    help="The repository copied from (1: [repository], 2: [repository.2]).",
)
@click.option(
    "--to",
    "target",
    type=click.IntRange(1, 2),
    default=2,
    show_default=True,
    help="The repository filled.",
)
@click.option("--dry-run", is_flag=True, help="Print what would be copied; copy nothing.")
@click.option("--no-progress", is_flag=True, help="Do not draw progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@click.pass_obj
def copy(
    obj: CliContext, source: int, target: int, dry_run: bool, no_progress: bool, as_json: bool
) -> None:  # fmt: skip
    """Copy into one repository every object it lacks from the other (a new second repository,
    or one that missed writes): streamed, with metadata, manifests last. Run it twice: the
    second run copies nothing."""
    from backup_engine.errors import UsageError
    from backup_engine.locks import LOCK_PREFIX
    from backup_engine.storage.copy import copy_objects, plan_copy

    if source == target:
        raise UsageError("--from and --to name the same repository")
    settings = obj.settings()
    origin, into = settings.open_repository(source), settings.open_repository(target)
    missing, present = plan_copy(origin, into, skip=(LOCK_PREFIX,))
    total = sum(info.size for info in missing)
    if dry_run:
        if as_json:
            emit_json({"copied": 0, "would_copy": len(missing), "bytes": total,
                       "present": present, "keys": [i.key for i in missing]})  # fmt: skip
            return
        for info in missing:
            click.echo(f"would copy {info.key} ({human_bytes(info.size)})")
        click.echo(f"{len(missing)} objects ({human_bytes(total)}) would be copied from "
                   f"{origin.url} to {into.url}; {present} already there")  # fmt: skip
        return
    progress = obj.progress(json_output=as_json, enabled=not no_progress)
    report = copy_objects(origin, into, missing, progress)
    report.present += present
    if as_json:
        emit_json(report.to_dict())
        return
    click.echo(f"copied {len(report.copied)} objects ({human_bytes(report.bytes)}) from "
               f"{origin.url} to {into.url}; {report.present} already there")  # fmt: skip
