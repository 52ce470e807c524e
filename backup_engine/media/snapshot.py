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
from dataclasses import dataclass, field
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
    SkippedEntry,
    object_key,
)
from backup_engine.progress import Progress
from backup_engine.storage.base import Storage

CHUNK = 1 << 20
RETRIES = 3  # reads of a file that keeps changing before it is listed as skipped


class FileChanged(BackupEngineError):
    """A file changed while it was being backed up."""


@dataclass
class _Upload:
    objects: int = 0
    bytes: int = 0


def _walk(root: Path) -> Iterator[tuple[str, os.stat_result | None, Path]]:
    """Every path below `root`, sorted, as (relative posix path, lstat or None if it vanished,
    absolute path)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(dirnames) + sorted(filenames):
            path = base / name
            try:
                st = path.lstat()
            except FileNotFoundError:
                st = None
            yield path.relative_to(root).as_posix(), st, path


@dataclass(frozen=True)
class _Read:
    sha256: str
    size: int
    mtime_ns: int


def _read_once(path: Path, sink: Callable[[bytes], None] | None = None) -> _Read:
    """One pass over an open file: hash and count exactly the bytes read (and hand them to
    `sink`, which compresses and uploads); the file's mtime before and after must agree."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        before = os.fstat(fh.fileno())
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if sink is not None:
                sink(chunk)
        after = os.fstat(fh.fileno())
    if (before.st_mtime_ns, before.st_size) != (after.st_mtime_ns, after.st_size) or (
        size != after.st_size
    ):
        raise FileChanged(f"{path} changed while it was read")
    return _Read(digest.hexdigest(), size, after.st_mtime_ns)


def _upload(storage: Storage, codec: Codec, path: Path, expected: _Read, key: str) -> int:
    """Store the file under its content's key; the bytes stored must be the bytes hashed."""
    try:
        with storage.writer(key, if_absent=True) as out:
            compressor = codec.compressor()
            read = _read_once(path, lambda chunk: out.write(compressor.compress(chunk)))
            out.write(compressor.flush())
            if read != expected:
                raise FileChanged(f"{path} changed while it was backed up")
            return out.commit().size
    except ObjectExists:  # stored meanwhile by a concurrent snapshot: same content by name
        return 0


@dataclass
class _Walker:
    storage: Storage
    codec: Codec
    previous: dict[str, MediaEntry]
    existing: set[str]
    uploaded: _Upload = field(default_factory=_Upload)
    skipped: list[SkippedEntry] = field(default_factory=list)
    links: dict[tuple[int, int], str] = field(default_factory=dict)  # (dev, ino) -> first path

    def file(self, rel: str, st: os.stat_result, path: Path) -> MediaEntry | None:
        inode = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and inode in self.links:
            return MediaEntry(rel, "hardlink", stat.S_IMODE(st.st_mode), st.st_mtime_ns,
                              target=self.links[inode])  # fmt: skip
        entry = self._file(rel, st, path)
        if entry is not None and st.st_nlink > 1:  # later names of it become hard links
            self.links[inode] = rel
        return entry

    def _file(self, rel: str, st: os.stat_result, path: Path) -> MediaEntry | None:
        known = self.previous.get(rel)
        reads: list[Callable[[], _Read]] = [lambda: _read_once(path)] * RETRIES
        if known and known.sha256 and (known.size, known.mtime_ns) == (st.st_size, st.st_mtime_ns):
            recorded = _Read(known.sha256, known.size, known.mtime_ns)
            reads.insert(0, lambda: recorded)  # unchanged since the last snapshot: not re-read
        for read in reads:
            try:
                return self._stored(rel, st, path, read())
            except FileNotFoundError:
                self.skipped.append(SkippedEntry(rel, "vanished while read"))
                return None
            except FileChanged:
                continue  # still being written (or not what was recorded): read it again
        self.skipped.append(SkippedEntry(rel, f"changed while read ({RETRIES} tries)"))
        return None

    def _stored(self, rel: str, st: os.stat_result, path: Path, read: _Read) -> MediaEntry:
        key = object_key(read.sha256, self.codec.suffix)
        if key not in self.existing:
            stored = _upload(self.storage, self.codec, path, read, key)
            self.existing.add(key)
            self.uploaded.objects += 1
            self.uploaded.bytes += stored
        mode = stat.S_IMODE(st.st_mode)
        return MediaEntry(rel, "file", mode, read.mtime_ns, read.size, read.sha256)


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
    walker = _Walker(
        storage, codec, _previous_entries(storage, str(root)),
        {info.key for info in storage.list(OBJECTS_PREFIX)},
    )  # fmt: skip
    entries: list[MediaEntry] = []
    with (progress or Progress()).task(f"media snapshot of {root}", None) as task:
        for rel, st, path in _walk(root):
            if st is None:
                walker.skipped.append(SkippedEntry(rel, "vanished while read"))
                continue
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode):
                entries.append(MediaEntry(rel, "dir", mode, st.st_mtime_ns))
            elif stat.S_ISLNK(st.st_mode):
                try:
                    target = os.readlink(path)
                except FileNotFoundError:
                    walker.skipped.append(SkippedEntry(rel, "vanished while read"))
                    continue
                entries.append(MediaEntry(rel, "symlink", mode, st.st_mtime_ns, target=target))
            elif stat.S_ISREG(st.st_mode):
                entry = walker.file(rel, st, path)
                if entry is not None:
                    entries.append(entry)
                    task.advance(entry.size)
            else:  # not media, but never dropped silently: listed in the manifest and output
                walker.skipped.append(SkippedEntry(rel, _special_kind(st.st_mode)))
    root_stat = root.stat()
    uploaded = walker.uploaded
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
        root_mode=stat.S_IMODE(root_stat.st_mode),
        root_mtime_ns=root_stat.st_mtime_ns,
        skipped=tuple(walker.skipped),
    )
    manifest_key = MEDIA_SNAPSHOTS.manifest_key(backup_id)
    storage.put_bytes(manifest_key, manifest.to_json().encode(), if_absent=True)
    return manifest


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special file"


def _previous_entries(storage: Storage, source: str) -> dict[str, MediaEntry]:
    for manifest in reversed(MEDIA_SNAPSHOTS.list(storage).backups):
        if manifest.source == source:
            return {e.path: e for e in manifest.entries if e.type == "file"}
    return {}
