"""Restoring a media snapshot into an empty directory, and verifying a snapshot's objects."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import zstandard

from backup_engine.codecs import get_codec
from backup_engine.errors import CorruptObject, ObjectNotFound, UsageError
from backup_engine.media.manifest import (
    MEDIA_SNAPSHOTS,
    MediaEntry,
    MediaSnapshotManifest,
    object_key,
)
from backup_engine.progress import Progress
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


def _safe_path(root: Path, relative: str) -> Path:
    path = root / relative
    if Path(relative).is_absolute() or ".." in Path(relative).parts:
        raise CorruptObject(f"snapshot entry {relative!r} would escape the target directory")
    return path


def _fetch(
    storage: Storage, manifest: MediaSnapshotManifest, entry: MediaEntry, destination: Path
) -> int:
    """Stream one object into `destination`, checking the content against its sha256."""
    assert entry.sha256 is not None
    codec = get_codec(manifest.compression)
    key = object_key(entry.sha256, codec.suffix)
    digest = hashlib.sha256()
    size = 0
    try:
        with storage.open_reader(key) as raw, destination.open("wb") as out:
            stream = codec.open_decompressed(raw)
            while chunk := stream.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
    except ObjectNotFound:
        raise CorruptObject(
            f"object {key} for {entry.path} is missing from the repository",
            hint="the snapshot is damaged; restore another one",
        ) from None
    except zstandard.ZstdError as exc:
        raise CorruptObject(f"object {key} for {entry.path} does not decompress: {exc}") from None
    if digest.hexdigest() != entry.sha256 or size != entry.size:
        raise CorruptObject(f"object {key} for {entry.path} does not match its sha256")
    return size


def restore_media(
    storage: Storage,
    ref: str,
    destination: Path,
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> MediaRestoreResult:
    started = time.monotonic()
    manifest = MEDIA_SNAPSHOTS.resolve(storage, ref)
    destination = destination.absolute()
    total = 0
    with (
        prepared_target(destination, force=force),
        (progress or Progress()).task(
            f"restore {manifest.backup_id}", manifest.total_bytes
        ) as task,
    ):
        for entry in manifest.entries:
            path = _safe_path(destination, entry.path)
            if entry.type == "dir":
                path.mkdir(exist_ok=True)
            elif entry.type == "symlink":
                assert entry.target is not None
                os.symlink(entry.target, path)
            elif entry.type == "file":
                total += _fetch(storage, manifest, entry, path)
                os.chmod(path, entry.mode)
                os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns))
                task.advance(entry.size)
            else:
                raise UsageError(f"snapshot entry {entry.path} has unknown type {entry.type!r}")
        for entry in reversed(manifest.entries):  # directories last: files changed their mtimes
            if entry.type == "dir":
                path = destination / entry.path
                os.chmod(path, entry.mode)
                os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns))
    return MediaRestoreResult(
        manifest.backup_id, destination, manifest.file_count, total, time.monotonic() - started
    )


@dataclass(frozen=True)
class MediaVerifyResult:
    backup_id: str
    objects: int
    seconds: float


def verify_media(
    storage: Storage, ref: str, *, progress: Progress | None = None
) -> MediaVerifyResult:
    """Every object the snapshot refers to exists and holds exactly the content it names."""
    started = time.monotonic()
    manifest = MEDIA_SNAPSHOTS.resolve(storage, ref)
    checked: set[str] = set()
    scratch = Path(os.devnull)
    with (progress or Progress()).task(
        f"verify {manifest.backup_id}", manifest.total_bytes
    ) as task:
        for entry in manifest.entries:
            if entry.type != "file" or entry.sha256 in checked:
                continue
            _fetch(storage, manifest, entry, scratch)
            assert entry.sha256 is not None
            checked.add(entry.sha256)
            task.advance(entry.size)
    return MediaVerifyResult(manifest.backup_id, len(checked), time.monotonic() - started)
