"""`expire`: apply the retention policy to a repository, or show what it would delete and why.

Deletion order is the reverse of writing: a backup's manifest goes first, so an interrupted
expire leaves an incomplete backup (never listed, cleaned up next time), never a listed backup
with missing pieces. Media objects are deleted only when no kept snapshot refers to them and
they are older than a grace period (a snapshot being taken may not have written its manifest
yet). Incomplete backups older than the grace period are cleaned up too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from backup_engine.errors import IntegrityError, ObjectNotFound
from backup_engine.kinds import KINDS, MEDIA, POSTGRES, BackupKind
from backup_engine.media.manifest import OBJECTS_PREFIX, MediaSnapshotManifest
from backup_engine.media.prune import PrunePlan, PruneRefused, apply_prune, plan_prune
from backup_engine.postgres.manifest import BaseBackupManifest
from backup_engine.postgres.manifest_checks import manifest_problems
from backup_engine.postgres.timelines import build_tree
from backup_engine.postgres.wal import WAL_PREFIX, split_wal_key
from backup_engine.retention import (
    Decision,
    RetentionPolicy,
    keep_segment,
    wal_keep_ranges,
)
from backup_engine.snapshots import Catalog, M, SnapshotKind
from backup_engine.storage.base import ObjectInfo, Storage
from backup_engine.storage.object_lock import LockState

GRACE = timedelta(days=1)


class ExpireRefused(IntegrityError):
    """Expire found something it cannot reason from, and deleted nothing."""


@dataclass(frozen=True)
class ExpireItem:
    kind: str  # "postgres", "wal", "redis", "media", "media-object", "media-pack"
    name: str  # backup id, or object key
    keep: bool
    reason: str
    keys: tuple[str, ...] = ()  # what deleting it removes, manifest first
    bytes: int = 0


@dataclass
class ExpirePlan:
    items: list[ExpireItem] = field(default_factory=list)
    media_prune: PrunePlan | None = None  # packs: deleted last, after the index is rewritten

    @property
    def deletions(self) -> list[ExpireItem]:
        return [item for item in self.items if not item.keep]

    @property
    def bytes_freed(self) -> int:
        return sum(item.bytes for item in self.deletions)


def _backup_items(
    kind: str,
    snapshots: SnapshotKind[M],
    catalog: Catalog[M],
    decisions: Iterable[Decision],
    listing: list[ObjectInfo],
    now: datetime,
) -> list[ExpireItem]:
    items = []
    for decision in decisions:
        prefix = snapshots.backup_prefix(decision.backup_id)
        objects = [o for o in listing if o.key.startswith(prefix)]
        manifest = snapshots.manifest_key(decision.backup_id)
        keys = (manifest, *(o.key for o in objects if o.key != manifest))
        items.append(
            ExpireItem(kind, decision.backup_id, decision.keep, decision.reason,
                       () if decision.keep else keys, sum(o.size for o in objects))
        )  # fmt: skip
    for incomplete in catalog.incomplete:
        prefix = snapshots.backup_prefix(incomplete.backup_id)
        objects = [o for o in listing if o.key.startswith(prefix)]
        newest = max((o.modified for o in objects if o.modified), default=None)
        fresh = newest is not None and now - newest < GRACE
        reason = f"incomplete ({incomplete.reason})" + (
            ": may still be running, kept for a day" if fresh else ", older than a day"
        )
        items.append(
            ExpireItem(kind, incomplete.backup_id, fresh, reason,
                       () if fresh else tuple(o.key for o in objects), sum(o.size for o in objects))
        )  # fmt: skip
    return items


def _wal_items(
    storage: Storage,
    listing: list[ObjectInfo],
    kept: Sequence[BaseBackupManifest],
    policy: RetentionPolicy,
    now: datetime,
) -> list[ExpireItem]:
    """WAL segments (and .partial files) no kept backup and no day of the PITR window needs,
    per timeline as the timeline tree sees the archive. History files are never deleted: they
    are tiny, and without them a timeline cannot be followed."""
    if not kept:
        return []
    segment_size = kept[0].wal_segment_size
    window_from, ranges = wal_keep_ranges(kept, policy, now, segment_size)
    tree = build_tree(storage, segment_size, listing)
    newest = max((t.last_segment or 0 for t in tree.timelines.values()), default=None)
    if newest is not None and window_from > newest + 1:
        raise ExpireRefused(
            f"expire deleted nothing: the PITR window would start at WAL segment {window_from}, "
            f"after everything archived (up to {newest}); a base backup manifest is not genuine",
            hint="check the newest base backups' start LSNs with: backup-engine pg list",
        )
    recent = now - timedelta(days=policy.wal_days)
    items = []
    for timeline in tree.timelines.values():
        for number, info in sorted(
            [*timeline.segments.items(), *timeline.partial.items()], key=lambda i: i[1].key
        ):
            if info.modified is None or info.modified >= recent:
                continue  # archived inside the window (the store's own clock says so): kept
            if not keep_segment(number, window_from, ranges):
                name = (split_wal_key(info.key) or (info.key, ""))[0]
                reason = f"before the {policy.wal_days}-day window and no kept backup needs it"
                items.append(ExpireItem("wal", name, False, reason, (info.key,), info.size))
    return items


def _media_object_items(
    listing: list[ObjectInfo], kept: Sequence[MediaSnapshotManifest], now: datetime
) -> list[ExpireItem]:
    referenced: set[str] = set()
    for manifest in kept:
        referenced |= manifest.object_keys()
    items = []
    for info in listing:
        if info.key in referenced:
            continue
        if info.modified is None or now - info.modified < GRACE:
            continue  # may belong to a snapshot still being taken
        reason = "no kept media snapshot refers to it"
        items.append(ExpireItem("media-object", info.key, False, reason, (info.key,), info.size))
    return items


def _refuse_unreadable(
    storage: Storage,
    catalogs: Mapping[BackupKind, Catalog[Any]],
    base: Catalog[BaseBackupManifest],
    listing: list[ObjectInfo],
    now: datetime,
) -> None:
    """Expire reasons from every manifest; one it cannot read or trust stops it entirely."""
    for kind, catalog in catalogs.items():
        for item in catalog.unreadable:
            raise ExpireRefused(
                f"expire deleted nothing: the manifest of {kind.what} {item.backup_id} cannot be "
                f"read ({item.reason})",
                hint="a wrong or missing encryption key makes every manifest unreadable; "
                "otherwise inspect that manifest (it may be damaged or forged)",
            )
    if storage.encryption_info() is not None:  # listed sizes are estimates there: ask exactly
        present = {info.key for info in listing}
        listing = [
            storage.stat(stored.key)
            for backup in base.backups
            for stored in backup.files
            if stored.key in present
        ]
    problems = manifest_problems(base.backups, listing, now)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ExpireRefused(
            f"expire deleted nothing: {problems[0]}{more}",
            hint="inspect that manifest: it may be damaged or forged",
        )


def _media_pack_items(prune: PrunePlan) -> list[ExpireItem]:
    return [
        ExpireItem(
            "media-pack", d.key, not d.delete, d.reason, (d.key,) if d.delete else (), d.bytes
        )
        for d in prune.packs
    ]


def plan_expire(
    storage: Storage, policy: RetentionPolicy, now: datetime, *, prune_packs: bool = True
) -> ExpirePlan:
    """What to delete and why. `prune_packs` False: a media backup is running, so no pack is
    deleted this time (they are reported as kept)."""
    plan = ExpirePlan()
    catalogs: dict[BackupKind, Catalog[Any]] = {kind: kind.catalog.list(storage) for kind in KINDS}
    listings = {kind: list(storage.list(kind.catalog.prefix)) for kind in KINDS}
    _refuse_unreadable(storage, catalogs, catalogs[POSTGRES], listings[POSTGRES], now)
    kept: dict[BackupKind, list[Any]] = {}
    for kind, catalog in catalogs.items():
        decisions = kind.decisions(storage, catalog.backups, policy, now)
        plan.items += _backup_items(kind.name, kind.catalog, catalog, decisions, listings[kind],
                                    now)  # fmt: skip
        kept_ids = {d.backup_id for d in decisions if d.keep}
        kept[kind] = [b for b in catalog.backups if b.backup_id in kept_ids]
    # what only one kind has: the WAL its kept base backups need, the content media shares
    plan.items += _wal_items(storage, list(storage.list(WAL_PREFIX)), kept[POSTGRES], policy, now)
    plan.items += _media_object_items(list(storage.list(OBJECTS_PREFIX)), kept[MEDIA], now)
    try:
        plan.media_prune = plan_prune(storage, kept[MEDIA], now, GRACE, may_delete=prune_packs)
    except PruneRefused as exc:
        raise ExpireRefused(exc.message, hint=exc.hint) from None
    plan.items += _media_pack_items(plan.media_prune)
    plan.items = _hold_locked(storage, plan.items)
    return plan


def _lock_state(storage: Storage, key: str) -> LockState:
    try:
        return storage.lock_state(key)
    except ObjectNotFound:
        return LockState(until=None)  # gone meanwhile: nothing protects it


def _hold_locked(storage: Storage, items: list[ExpireItem]) -> list[ExpireItem]:
    """Under Object Lock, a deletion of anything the store still protects becomes a keep: the
    backup stays whole, listed and restorable until its lock ends, and a later expire removes
    it. (Deleting it now would only hide it behind a delete marker, its bytes still kept and
    billed.) One HEAD per object to delete, eight at a time. Media packs are prune's own: it
    keeps a locked pack the same way (media/prune.py)."""
    if storage.object_lock is None:
        return items
    now = storage.store_now()
    held_kinds = [item for item in items if item.kind != "media-pack"]
    doomed = sorted({key for item in held_kinds if not item.keep for key in item.keys})
    with ThreadPoolExecutor(8, thread_name_prefix="lock") as pool:
        states = dict(zip(doomed, pool.map(partial(_lock_state, storage), doomed), strict=True))
    held = []
    for item in items:
        locked = [states[k] for k in item.keys if k in states and states[k].locked(now)]
        if not locked:
            held.append(item)
            continue
        last = max(locked, key=lambda s: (s.legal_hold, s.until or now))
        reason = f"{item.reason}, but {last.describe()}: a later expire removes it"
        held.append(replace(item, keep=True, reason=reason, keys=()))
    return held


def apply_expire(storage: Storage, plan: ExpirePlan) -> int:
    """Delete what the plan says, manifest first for each backup. Returns objects deleted."""
    deleted = 0
    # Newest base backup first: an interrupted expire never leaves an incremental whose
    # parent is gone while it stays.
    backups = [item for item in plan.deletions if item.kind == "postgres"]
    rest = [item for item in plan.deletions if item.kind != "postgres"]
    for item in [*reversed(backups), *rest]:
        if item.kind == "media-pack":
            continue  # below, after the index that names them is rewritten
        for key in item.keys:
            storage.delete(key)
            deleted += 1
    if plan.media_prune is not None:
        deleted += apply_prune(storage, plan.media_prune, datetime.now(UTC))
    return deleted
