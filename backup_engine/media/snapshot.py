"""Taking a media snapshot: walk the tree, store each new file once, write the manifest last.

Incremental like restic: a file whose size and mtime match the previous snapshot of the same
directory keeps its recorded sha256 without being read; any other file is hashed, and uploaded
only if no object with that hash exists yet. Files are streamed in chunks, never read whole.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from backup_engine import __version__
from backup_engine.codecs import Codec
from backup_engine.errors import BackupEngineError, ObjectExists, UsageError
from backup_engine.locks import repository_lock
from backup_engine.manifests import encryption_extra
from backup_engine.media.manifest import (
    MEDIA_SNAPSHOTS,
    OBJECTS_PREFIX,
    MediaEntry,
    MediaSnapshotManifest,
    object_key,
)
from backup_engine.progress import Progress
from backup_engine.storage.base import Storage

CHUNK = 1 << 20


class FileChanged(BackupEngineError):
    """A file changed while it was being backed up."""


@dataclass
class _Upload:
    objects: int = 0
    bytes: int = 0


def _walk(root: Path) -> Iterator[tuple[str, os.stat_result, Path]]:
    """Every path below `root`, sorted, as (relative posix path, lstat, absolute path)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(dirnames) + sorted(filenames):
            path = base / name
            yield path.relative_to(root).as_posix(), path.lstat(), path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _upload(storage: Storage, codec: Codec, path: Path, sha256: str, key: str) -> int:
    digest = hashlib.sha256()
    try:
        with storage.writer(key, if_absent=True) as out, path.open("rb") as fh:
            compressor = codec.compressor()
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
                out.write(compressor.compress(chunk))
            out.write(compressor.flush())
            if digest.hexdigest() != sha256:
                raise FileChanged(f"{path} changed while it was backed up", hint="run again")
            return out.commit().size
    except ObjectExists:  # stored meanwhile by a concurrent snapshot: same content by name
        return 0


def take_media_snapshot(
    storage: Storage,
    codec: Codec,
    root: Path,
    *,
    progress: Progress | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> MediaSnapshotManifest:
    root = root.absolute()
    if not root.is_dir():
        raise UsageError(f"{root} is not a directory", hint="pass the directory to back up")
    storage.check()
    with repository_lock(storage, f"media-{hashlib.sha256(str(root).encode()).hexdigest()[:12]}"):
        return _take(storage, codec, root, progress, clock)


def _take(
    storage: Storage,
    codec: Codec,
    root: Path,
    progress: Progress | None,
    clock: Callable[[], datetime],
) -> MediaSnapshotManifest:
    started = clock()
    previous = _previous_entries(storage, str(root))
    existing = {info.key for info in storage.list(OBJECTS_PREFIX)}
    entries: list[MediaEntry] = []
    uploaded = _Upload()
    with (progress or Progress()).task(f"media snapshot of {root}", None) as task:
        for rel, st, path in _walk(root):
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode):
                entries.append(MediaEntry(rel, "dir", mode, st.st_mtime_ns))
            elif stat.S_ISLNK(st.st_mode):
                entries.append(
                    MediaEntry(rel, "symlink", mode, st.st_mtime_ns, target=os.readlink(path))
                )
            elif stat.S_ISREG(st.st_mode):
                known = previous.get(rel)
                unchanged = known and known.size == st.st_size and known.mtime_ns == st.st_mtime_ns
                sha256 = known.sha256 if unchanged and known and known.sha256 else _sha256(path)
                key = object_key(sha256, codec.suffix)
                if key not in existing:
                    stored = _upload(storage, codec, path, sha256, key)
                    existing.add(key)
                    uploaded.objects += 1
                    uploaded.bytes += stored
                entries.append(MediaEntry(rel, "file", mode, st.st_mtime_ns, st.st_size, sha256))
                task.advance(st.st_size)
            # sockets, fifos and devices are not media: skipped
    backup_id = MEDIA_SNAPSHOTS.new_backup_id(storage, started)
    manifest = MediaSnapshotManifest(
        backup_id=backup_id,
        start_time=started,
        stop_time=clock(),
        source=str(root),
        compression=codec.name,
        entries=tuple(entries),
        files=(),
        new_objects=uploaded.objects,
        new_bytes=uploaded.bytes,
        tool_version=__version__,
        extra=encryption_extra(storage),
    )
    manifest_key = MEDIA_SNAPSHOTS.manifest_key(backup_id)
    storage.put_bytes(manifest_key, manifest.to_json().encode(), if_absent=True)
    return manifest


def _previous_entries(storage: Storage, source: str) -> dict[str, MediaEntry]:
    for manifest in reversed(MEDIA_SNAPSHOTS.list(storage).backups):
        if manifest.source == source:
            return {e.path: e for e in manifest.entries if e.type == "file"}
    return {}
