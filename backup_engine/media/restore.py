"""Restoring a media snapshot into an empty directory, and verifying a snapshot's content
(format 2, packed, in packed_restore.py; format 1, one object per file, here)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import zstandard

from backup_engine.codecs import get_codec
from backup_engine.errors import CorruptObject, IntegrityError, ObjectNotFound, UsageError
from backup_engine.integrity import Expected, VerifyingReader
from backup_engine.media.index import load_index
from backup_engine.media.manifest import (
    MEDIA_SNAPSHOTS,
    OBJECTS_PREFIX,
    MediaEntry,
    MediaSnapshotManifest,
    object_key,
)
from backup_engine.media.packed_restore import (
    PackedRestore,
    Selection,
    needed_blobs,
    packed_blobs_by_pack,
    verify_packed,
)
from backup_engine.media.packs import PACKS_PREFIX
from backup_engine.progress import Progress
from backup_engine.safefs import Attributes, SafeTree
from backup_engine.storage.base import Storage
from backup_engine.targetdir import prepared_target

CHUNK = 1 << 20


@dataclass(frozen=True)
class MediaRestoreResult:
    backup_id: str
    destination: Path
    files: int
    bytes: int
    seconds: float
    failed: tuple[str, ...] = ()  # "path: why" for every entry that could not be restored


class PartialRestore(IntegrityError):
    """Some entries could not be restored (damaged or missing objects); the rest were."""

    def __init__(self, result: MediaRestoreResult) -> None:
        shown = "; ".join(result.failed[:3]) + (
            f" and {len(result.failed) - 3} more" if len(result.failed) > 3 else ""
        )
        super().__init__(
            f"restored {result.files} files into {result.destination}, but "
            f"{len(result.failed)} could not be restored: {shown}",
            hint="those objects are damaged or missing; restore them from an older snapshot",
        )
        self.result = result


class _Failed(Exception):
    pass


def _fetch_into(
    storage: Storage, manifest: MediaSnapshotManifest, entry: MediaEntry, tree: SafeTree
) -> int:
    assert entry.sha256 is not None
    codec = get_codec(manifest.compression)
    key = object_key(entry.sha256, codec.suffix)
    try:
        with storage.open_reader(key) as raw:
            expected = Expected(key, entry.size, entry.sha256, name=f"{_CHECK}object {key}")
            checked = VerifyingReader(codec.open_decompressed(raw), expected)
            attrs = Attributes(entry.mode, entry.mtime_ns)
            written = tree.write_file(entry.path, checked, entry.size, attrs)
            checked.drain()  # a longer object is refused too
            return written
    except ObjectNotFound:
        raise _Failed(f"{entry.path}: object {key} is missing") from None
    except zstandard.ZstdError as exc:
        raise _Failed(f"{entry.path}: object {key} does not decompress ({exc})") from None
    except CorruptObject as exc:
        if exc.message.startswith(_CHECK):
            raise _Failed(f"{entry.path}: {exc.message.removeprefix(_CHECK)}") from None
        raise


_CHECK = "content check: "


def _restore_entry(
    storage: Storage, manifest: MediaSnapshotManifest, entry: MediaEntry, tree: SafeTree
) -> int:
    if entry.type == "dir":
        tree.mkdir(entry.path, Attributes(entry.mode, entry.mtime_ns))
    elif entry.type == "symlink":
        assert entry.target is not None
        tree.symlink(entry.path, entry.target)
    elif entry.type == "hardlink":
        assert entry.target is not None
        tree.hardlink(entry.path, entry.target)
    else:
        return _fetch_into(storage, manifest, entry, tree)
    return 0


def restore_media(
    storage: Storage,
    ref: str,
    destination: Path,
    *,
    force: bool = False,
    keep_setid: bool = False,
    progress: Progress | None = None,
    include: tuple[str, ...] = (),
    concurrency: int = 4,
) -> MediaRestoreResult:
    """Restore a snapshot (or, with `include`, the entries matching those patterns) into an
    empty directory. Every entry is written through SafeTree (no entry can reach outside the
    destination); content that is missing or damaged is named and skipped, the rest is
    restored, and PartialRestore (exit 4) says what is missing."""
    started = time.monotonic()
    manifest = MEDIA_SNAPSHOTS.resolve(storage, ref)
    if include and not manifest.packed:
        raise UsageError(
            f"media snapshot {manifest.backup_id} was taken by an older version (format 1): "
            "--include restores only snapshots of format 2",
            hint="restore it whole, then copy the folder you need",
        )
    destination = destination.absolute()
    total = files = 0
    failed: list[str] = []
    with (
        prepared_target(destination, force=force),
        (progress or Progress()).task(
            f"restore {manifest.backup_id}", manifest.total_bytes
        ) as task,
        SafeTree(
            destination, f"media snapshot {manifest.backup_id}", keep_setid=keep_setid
        ) as tree,
    ):
        if manifest.packed:
            packed = PackedRestore(storage, tree, task, concurrency, Selection(include))
            packed.run(manifest)
            total, files, failed = packed.bytes, packed.files, packed.failed
        for entry in manifest.entries:  # format 1
            try:
                written = _restore_entry(storage, manifest, entry, tree)
            except _Failed as exc:
                failed.append(str(exc))
                tree.forget(entry.path)
                continue
            if entry.type == "file":
                total += written
                files += 1
                task.advance(entry.size)
        if manifest.root_mode is not None:
            tree.set_root(Attributes(manifest.root_mode, manifest.root_mtime_ns))
        tree.finish()
    result = MediaRestoreResult(
        manifest.backup_id, destination, files, total, time.monotonic() - started, tuple(failed)
    )
    if failed:
        raise PartialRestore(result)
    return result


@dataclass(frozen=True)
class MediaVerifyResult:
    backup_id: str
    objects: int
    seconds: float


def verify_media(
    storage: Storage, ref: str, *, progress: Progress | None = None, concurrency: int = 4
) -> MediaVerifyResult:
    """Every blob (format 1: object) the snapshot refers to exists and holds exactly the
    content it names."""
    started = time.monotonic()
    manifest = MEDIA_SNAPSHOTS.resolve(storage, ref)
    checked: set[str] = set()
    failed: list[str] = []
    if manifest.packed:
        with (progress or Progress()).task(f"verify {manifest.backup_id}", None):
            for blob_id, why in verify_packed(storage, manifest, concurrency):
                checked.add(blob_id)
                if why is not None:
                    failed.append(f"blob {blob_id[:16]} {why}" if why.startswith("is ") else why)
    codec = get_codec(manifest.compression)
    with (progress or Progress()).task(
        f"verify {manifest.backup_id}", manifest.total_bytes
    ) as task:
        for entry in manifest.entries:
            if entry.type != "file" or entry.sha256 in checked:
                continue
            assert entry.sha256 is not None
            checked.add(entry.sha256)
            key = object_key(entry.sha256, codec.suffix)
            try:
                with storage.open_reader(key) as raw:
                    expected = Expected(key, entry.size, entry.sha256)
                    VerifyingReader(codec.open_decompressed(raw), expected).drain()
            except ObjectNotFound:
                failed.append(f"{key} (for {entry.path}) is missing")
            except zstandard.ZstdError:
                failed.append(f"{key} (for {entry.path}) does not decompress")
            except CorruptObject:
                failed.append(f"{key} (for {entry.path}) does not match its sha256")
            task.advance(entry.size)
    if failed:
        more = f" and {len(failed) - 3} more" if len(failed) > 3 else ""
        raise CorruptObject(
            f"media snapshot {manifest.backup_id}: {'; '.join(failed[:3])}{more}",
            hint="the snapshot is damaged; restore another one",
        )
    return MediaVerifyResult(manifest.backup_id, len(checked), time.monotonic() - started)


def missing_media_content(storage: Storage, manifest: MediaSnapshotManifest) -> list[str]:
    """What the snapshot needs and the repository does not list (without reading content):
    format 2, blobs no index knows and packs that are gone; format 1, objects."""
    if not manifest.packed:
        present = {info.key for info in storage.list(OBJECTS_PREFIX)}
        return [f"object {key} is missing" for key in sorted(manifest.object_keys() - present)]
    groups, unknown = packed_blobs_by_pack(load_index(storage), needed_blobs(storage, manifest))
    present = {info.key for info in storage.list(PACKS_PREFIX)}
    return [f"blob {blob_id[:16]} is in no index" for blob_id in unknown] + [
        f"pack {pack} is missing" for pack in sorted(set(groups) - present)
    ]
