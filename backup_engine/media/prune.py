"""Prune: delete the packs no kept media snapshot needs, and the index entries naming them.

A pack is deleted only when none of its blobs is referenced by a kept snapshot (format 2), it
is older than the grace period, and no media backup is running: a backup reuses blobs it finds
in the index, so prune and backups exclude each other with locks (a backup refuses to start
while a prune holds its lock; a prune deletes no pack while a backup holds one). A pack no index
names (left by a crashed backup) is deleted after the grace period.

A pack at least half unused is rewritten: its used blobs are read (each checked against its
sha256) and packed anew, then the old pack goes like an unused one. Order, so that a crash at
any point loses nothing: new packs first, then a consolidated index of every pack that stays,
then the index objects it replaces are deleted, then the old packs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from backup_engine.errors import BackupEngineError, CorruptObject
from backup_engine.locks import BackupLocked, holders, repository_lock
from backup_engine.media.entries import iter_entries
from backup_engine.media.index import MediaIndex, load_index, write_index
from backup_engine.media.manifest import MediaSnapshotManifest
from backup_engine.media.packs import (
    PACKS_PREFIX,
    PackedBlob,
    PackRecord,
    PackUploader,
    is_pack_key,
    read_pack_blob_ids,
)
from backup_engine.storage.base import Storage
from backup_engine.storage.object_lock import LockState
from backup_engine.timefmt import backup_id_for

PRUNE_LOCK = "media-prune"
BACKUP_LOCKS = "media-"  # media backups lock "media-<hash of the directory>"


def refuse_while_pruning(storage: Storage) -> None:
    if PRUNE_LOCK in holders(storage, PRUNE_LOCK):
        raise BackupLocked(
            "a media prune (backup-engine expire) is running on this repository",
            hint="run the media backup again when expire has finished",
        )


@contextmanager
def pruning(storage: Storage) -> Iterator[bool]:
    """Hold the prune lock; yields whether packs may be deleted (no media backup running)."""
    with repository_lock(storage, PRUNE_LOCK):
        running = [n for n in holders(storage, BACKUP_LOCKS) if n != PRUNE_LOCK]
        yield not running


class PruneRefused(BackupEngineError):
    """Prune cannot reason from what the repository holds."""

    exit_code = 4


REPACK_UNUSED = 0.5  # a pack at least half unused (in bytes) is rewritten with what is used


@dataclass(frozen=True)
class PackDecision:
    key: str
    delete: bool
    reason: str
    bytes: int
    rewrite: tuple[PackedBlob, ...] = ()  # copied into a new pack before this one is deleted
    codec: str = "zstd"


@dataclass
class PrunePlan:
    packs: list[PackDecision] = field(default_factory=list)
    keep_records: list[PackRecord] = field(default_factory=list)  # for the new index
    replaced_indexes: list[str] = field(default_factory=list)

    @property
    def deletions(self) -> list[PackDecision]:
        return [d for d in self.packs if d.delete]


def referenced_blobs(storage: Storage, kept: Sequence[MediaSnapshotManifest]) -> set[str]:
    blobs: set[str] = set()
    for manifest in kept:
        if manifest.packed:
            for entry in iter_entries(storage, manifest):
                blobs.update(entry.blobs())
    return blobs


def plan_prune(
    storage: Storage,
    kept: Sequence[MediaSnapshotManifest],
    now: datetime,
    grace: timedelta,
    *,
    may_delete: bool = True,
) -> PrunePlan:
    index = load_index(storage)
    if index.unreadable:
        key, why = index.unreadable[0]
        raise PruneRefused(
            f"expire deleted nothing: the media index {key} cannot be read ({why})",
            hint="a wrong encryption key makes it unreadable; otherwise it is damaged or forged",
        )
    try:
        used = referenced_blobs(storage, kept)
    except CorruptObject as exc:
        raise PruneRefused(
            f"expire deleted nothing: a kept media snapshot cannot be read ({exc.message})",
            hint="verify it with: backup-engine media verify ID",
        ) from None
    plan = PrunePlan()
    records = index.records()
    locked = _lock_lookup(storage)
    for info in storage.list(PACKS_PREFIX):
        if not is_pack_key(info.key):
            continue
        record = records.get(info.key)
        live = [b for b in record.blobs if b.blob_id in used] if record else []
        if live:
            assert record is not None
            unused = len(record.blobs) - len(live)
            dead = sum(b.length for b in record.blobs) - sum(b.length for b in live)
            rewrite = may_delete and dead >= REPACK_UNUSED * record.size
            held = locked(info.key) if rewrite else None
            if rewrite and held is None:
                reason = f"rewritten: {len(live)} of its {len(record.blobs)} blobs are used"
                plan.packs.append(PackDecision(info.key, True, reason, info.size, tuple(live),
                                               record.codec))  # fmt: skip
                continue
            plan.keep_records.append(record)
            reason = f"{len(live)} of its blobs are used" + (f", {unused} not" if unused else "")
            if held is not None:
                reason += f"; {held.describe()}: a later prune rewrites it"
            plan.packs.append(PackDecision(info.key, False, reason, info.size))
            continue
        reason = "no index names it" if record is None else "no kept media snapshot uses it"
        fresh = info.modified is None or now - info.modified < grace
        held = None if fresh or not may_delete else locked(info.key)
        if fresh or not may_delete or held is not None:
            why = "written recently" if fresh else "a media backup is running"
            why = f"{held.describe()}: a later prune deletes it" if held is not None else why
            plan.packs.append(PackDecision(info.key, False, f"{reason}, but {why}", info.size))
            if record is not None:
                plan.keep_records.append(record)
            continue
        plan.packs.append(PackDecision(info.key, True, reason, info.size))
    _check_deletions(storage, plan, used, index)
    if plan.deletions:
        plan.replaced_indexes = list(index.sources)
    return plan


def _lock_lookup(storage: Storage) -> Callable[[str], LockState | None]:
    """Under Object Lock, what still protects a pack prune would delete or rewrite (one HEAD
    each): such a pack stays, with its index record, until a later prune. (The index objects
    a consolidated index replaces are hidden all the same: left current, they would name packs
    deleted since; their locked versions stay until the lock and the lifecycle rule allow.)"""
    if storage.object_lock is None:
        return lambda key: None
    now = storage.store_now()

    def held(key: str) -> LockState | None:
        state = storage.lock_state(key)
        return state if state.locked(now) else None

    return held


def _check_deletions(
    storage: Storage, plan: PrunePlan, used: set[str], indexed: MediaIndex
) -> None:
    """Reason from the packs themselves, not only from the index: a used blob no index names,
    or a pack to delete whose own trailer lists a used blob, means the index is damaged or
    forged, and nothing is deleted. An object that is not a pack this tool wrote is kept."""
    unknown = {blob_id for blob_id in used if blob_id not in indexed}
    if unknown:
        raise PruneRefused(
            f"expire deleted nothing: a kept media snapshot uses blob {min(unknown)[:16]}, "
            "which no media index names",
            hint="the index is damaged or forged; verify the snapshots (backup-engine media "
            "verify ID) before anything is deleted",
        )
    for n, decision in enumerate(plan.packs):
        if not decision.delete:
            continue
        try:
            held = read_pack_blob_ids(storage, decision.key, decision.bytes)
        except CorruptObject:
            plan.packs[n] = replace(decision, delete=False, reason="not a pack this tool wrote")
            continue
        needed = used.intersection(held) - {b.blob_id for b in decision.rewrite}
        if needed:
            raise PruneRefused(
                f"expire deleted nothing: the index says no kept media snapshot uses pack "
                f"{decision.key}, but the pack holds blob {min(needed)[:16]}, which one uses",
                hint="the media index is damaged or forged; nothing was deleted",
            )


def _rewrite(storage: Storage, decision: PackDecision) -> list[PackRecord]:
    """The used blobs of a mostly unused pack, checked against their sha256 and packed anew."""
    from backup_engine.media.index import BlobLocation
    from backup_engine.media.packed_restore import fetch_blobs

    wanted = [(b.blob_id, BlobLocation(decision.key, decision.codec, b.offset, b.length, b.size))
              for b in decision.rewrite]  # fmt: skip
    uploader = PackUploader(storage, decision.codec, 1, 2)
    try:
        for blob_id, data in fetch_blobs(storage, decision.key, wanted).items():
            if isinstance(data, str):
                raise PruneRefused(
                    f"expire deleted no media pack: blob {blob_id[:16]}, still used, cannot be "
                    f"copied out of {decision.key} ({data})",
                    hint="verify the snapshots that use it (backup-engine media verify ID)",
                )
            uploader.add(blob_id, data)
        return uploader.finish()
    except BaseException:
        uploader.abort()
        raise


def apply_prune(storage: Storage, plan: PrunePlan, now: datetime) -> int:
    """Copy the used blobs out of mostly unused packs, write the consolidated index, delete the
    index objects it replaces, then the packs. A crash anywhere leaves every used blob named
    by some index (at worst twice) and its pack in place."""
    if not plan.deletions:
        return 0
    deleted = 0
    for decision in plan.deletions:
        if decision.rewrite:
            plan.keep_records += _rewrite(storage, decision)
    if plan.keep_records:
        write_index(storage, f"prune-{backup_id_for(now)}-{os.urandom(4).hex()}", plan.keep_records)
    for key in plan.replaced_indexes:
        storage.delete(key)
        deleted += 1
    for decision in plan.deletions:
        storage.delete(decision.key)
        deleted += 1
    return deleted
