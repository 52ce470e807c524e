"""Taking a media snapshot: walk the tree, pack each new blob once, write the manifest last.

Incremental like restic: a file whose size, mtime and inode match the previous snapshot of the
same directory keeps its recorded blobs without being read; any other file is read once, cut
into blobs (4 MiB chunks), and each blob not in the repository's index yet is packed and
uploaded by a worker while the walk goes on. Order of writes: packs, then the index naming them,
then the entries, then `snapshot.json`; a crash anywhere leaves only unreferenced data, which
prune removes.
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
from backup_engine.codecs import Codec, ZstdCodec
from backup_engine.errors import BackupEngineError, CorruptObject, UsageError
from backup_engine.locks import repository_lock
from backup_engine.manifests import encryption_extra
from backup_engine.media.entries import EntriesWriter, iter_entries
from backup_engine.media.index import MediaIndex, load_index, write_index
from backup_engine.media.manifest import (
    MEDIA_SNAPSHOTS,
    MediaEntry,
    MediaSnapshotManifest,
    SkippedEntry,
)
from backup_engine.media.packs import CHUNK_SIZE, PackUploader
from backup_engine.media.prune import refuse_while_pruning
from backup_engine.progress import Progress, ProgressTask
from backup_engine.storage.base import Storage

RETRIES = 3  # reads of a file that keeps changing before it is listed as skipped


class FileChanged(BackupEngineError):
    """A file changed while it was being backed up."""


def _walk(root: Path) -> Iterator[tuple[str, os.stat_result | None, Path]]:
    """Every path below `root`, sorted, as (relative posix path, lstat or None if it vanished,
    absolute path)."""
    top = str(root)
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        inside = dirpath[len(top) :].lstrip("/")  # strings: pathlib cost more than the walk
        prefix = inside + "/" if inside else ""
        for name in sorted(dirnames) + sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                st = None
            yield prefix + name, st, Path(path)


@dataclass(frozen=True)
class _Read:
    sha256: str
    size: int
    mtime_ns: int
    chunks: tuple[str, ...]


def _unchanged(path: Path, before: os.stat_result, after: os.stat_result, size: int) -> None:
    if (before.st_mtime_ns, before.st_size) != (after.st_mtime_ns, after.st_size) or (
        size != after.st_size
    ):
        raise FileChanged(f"{path} changed while it was read")


@dataclass
class _Walker:
    uploader: PackUploader
    previous: _Previous  # the last snapshot's files, read alongside the walk
    index: MediaIndex  # the blobs the repository holds
    entries: EntriesWriter
    queued: set[bytes] = field(default_factory=set)  # blobs this snapshot packs (raw ids)
    new_blobs: int = 0
    skipped: list[SkippedEntry] = field(default_factory=list)
    links: dict[tuple[int, int], str] = field(default_factory=dict)  # (dev, ino) -> first path

    def add(self, entry: MediaEntry) -> None:
        self.entries.add(entry)

    def _stored(self, raw: bytes) -> bool:
        return raw in self.queued or self.index.has(raw)

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
        mode = stat.S_IMODE(st.st_mode)
        known = self.previous.find(rel)
        if (
            known is not None
            and (known.size, known.mtime_ns, known.inode) == (st.st_size, st.st_mtime_ns, st.st_ino)
            and all(self._stored(bytes.fromhex(blob)) for blob in known.blobs())
        ):  # unchanged since the last snapshot, and its blobs are stored: not read again
            return MediaEntry(rel, "file", mode, known.mtime_ns, known.size, known.sha256,
                              chunks=known.chunks, inode=known.inode)  # fmt: skip
        for _ in range(RETRIES):
            try:
                read = self._read(path)
            except FileNotFoundError:
                self.skipped.append(SkippedEntry(rel, "vanished while read"))
                return None
            except FileChanged:
                continue  # still being written: read it again
            chunks = read.chunks if len(read.chunks) > 1 else None
            return MediaEntry(rel, "file", mode, read.mtime_ns, read.size, read.sha256,
                              chunks=chunks, inode=st.st_ino)  # fmt: skip
        self.skipped.append(SkippedEntry(rel, f"changed while read ({RETRIES} tries)"))
        return None

    def _read(self, path: Path) -> _Read:
        """Hash the file and queue each of its blobs not stored yet, in one pass."""
        chunks: list[str] = []
        size = 0
        with path.open("rb") as fh:
            before = os.fstat(fh.fileno())
            whole = hashlib.sha256() if before.st_size > CHUNK_SIZE else None
            # Reads sized to what is left (+1 to see the end): read(CHUNK_SIZE) allocates 4 MiB
            # for a 20 KB file (mmapped, see entry.py): 1.06 s instead of 0.28 s per 20,000.
            while chunk := fh.read(min(CHUNK_SIZE, max(before.st_size - size, 0) + 1)):
                raw = hashlib.sha256(chunk).digest()
                if whole is not None:
                    whole.update(chunk)
                chunks.append(raw.hex())
                size += len(chunk)
                if not self._stored(raw):
                    self.uploader.add(raw.hex(), chunk)
                    self.queued.add(raw)
                    self.new_blobs += 1
            after = os.fstat(fh.fileno())
        _unchanged(path, before, after, size)
        if whole is not None and len(chunks) > 1:
            sha256 = whole.hexdigest()
        elif chunks:
            sha256 = chunks[0]
        else:
            sha256 = hashlib.sha256(b"").hexdigest()
        return _Read(sha256, size, after.st_mtime_ns, tuple(chunks))


def take_media_snapshot(
    storage: Storage,
    codec: Codec,
    root: Path,
    *,
    progress: Progress | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    concurrency: int = 4,
) -> MediaSnapshotManifest:
    root = root.absolute()
    if not root.is_dir():
        raise UsageError(f"{root} is not a directory", hint="pass the directory to back up")
    storage.check()
    with repository_lock(storage, f"media-{hashlib.sha256(str(root).encode()).hexdigest()[:12]}"):
        refuse_while_pruning(storage)  # a prune could delete blobs this snapshot reuses
        return _take(storage, codec, root, progress, clock, concurrency)


def _take(
    storage: Storage,
    codec: Codec,
    root: Path,
    progress: Progress | None,
    clock: Callable[[], datetime],
    concurrency: int,
) -> MediaSnapshotManifest:
    started = clock()
    backup_id = MEDIA_SNAPSHOTS.new_backup_id(storage, started)
    index = load_index(storage)
    level = codec.level if isinstance(codec, ZstdCodec) else 1
    uploader = PackUploader(storage, "none" if codec.name == "none" else "zstd", level, concurrency)
    entries = EntriesWriter(storage, backup_id)
    walker = _Walker(uploader, _previous_entries(storage, str(root)), index, entries)
    try:
        with (progress or Progress()).task(f"media snapshot of {root}", None) as task:
            _walk_into(walker, root, task)
        walker.previous.close()
        records = uploader.finish()
        if records:
            write_index(storage, f"{backup_id}-{os.urandom(4).hex()}", records)  # never taken
        listed = entries.commit()
    except BaseException:
        uploader.abort()
        entries.abort()
        raise
    root_stat = root.stat()
    manifest = MediaSnapshotManifest(
        backup_id=backup_id,
        start_time=started,
        stop_time=clock(),
        source=str(root),
        compression=codec.name,
        entries=(),
        files=(),
        new_objects=walker.new_blobs,
        new_bytes=sum(r.size for r in records),
        tool_version=__version__,
        format_version=2,
        extra=encryption_extra(storage),
        root_mode=stat.S_IMODE(root_stat.st_mode),
        root_mtime_ns=root_stat.st_mtime_ns,
        skipped=tuple(walker.skipped),
        entries_object=listed,
        entry_count=entries.count,
        files_total=entries.files,
        bytes_total=entries.bytes,
    )
    manifest_key = MEDIA_SNAPSHOTS.manifest_key(backup_id)
    storage.put_bytes(manifest_key, manifest.to_json().encode(), if_absent=True)
    return manifest


def _walk_into(walker: _Walker, root: Path, task: ProgressTask) -> None:
    for rel, st, path in _walk(root):
        if st is None:
            walker.skipped.append(SkippedEntry(rel, "vanished while read"))
            continue
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISDIR(st.st_mode):
            walker.add(MediaEntry(rel, "dir", mode, st.st_mtime_ns))
        elif stat.S_ISLNK(st.st_mode):
            try:
                target = os.readlink(path)
            except FileNotFoundError:
                walker.skipped.append(SkippedEntry(rel, "vanished while read"))
                continue
            walker.add(MediaEntry(rel, "symlink", mode, st.st_mtime_ns, target=target))
        elif stat.S_ISREG(st.st_mode):
            entry = walker.file(rel, st, path)
            if entry is not None:
                walker.add(entry)
                task.advance(entry.size)
        else:  # not media, but never dropped silently: listed in the manifest and output
            walker.skipped.append(SkippedEntry(rel, _special_kind(st.st_mode)))


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special file"


def _walk_key(path: str) -> tuple[tuple[str, ...], str]:
    """Where `_walk` lists a file: its directory (depth first, sorted: tuples compare so), then
    its name among the files of that directory."""
    *parent, name = path.split("/")
    return tuple(parent), name


class _Previous:
    """The files of the last snapshot of this directory, read alongside the walk. Both are in
    the walk's order, so a cursor that only moves forward finds each file's record without
    holding the list (a map of it cost 300 bytes a file: 60 MB at 200,000 files). A list that
    is not in that order only costs misses: those files are read again, never trusted less."""

    def __init__(self, entries: Iterator[MediaEntry] | None = None) -> None:
        self._entries = entries if entries is not None else iter(())
        self._files = (e for e in self._entries if e.type == "file" and e.inode is not None)
        self._head: MediaEntry | None = None
        self._key: tuple[tuple[str, ...], str] = ((), "")
        self._next()

    def _next(self) -> None:
        try:
            self._head = next(self._files)
            self._key = _walk_key(self._head.path)
        except (StopIteration, CorruptObject):  # an unreadable list: every file is read again
            self._head = None

    def close(self) -> None:
        """Let go of the list (its spool file) once the walk is done."""
        self._head = None
        close = getattr(self._entries, "close", None)
        if close is not None:
            close()

    def find(self, path: str) -> MediaEntry | None:
        key = _walk_key(path)
        while self._head is not None and self._key < key:
            self._next()
        return self._head if self._head is not None and self._key == key else None


def _previous_entries(storage: Storage, source: str) -> _Previous:
    """The files of the latest snapshot of this directory (none if its list cannot be read:
    then every file is read again, which costs time, never correctness). Format-1 snapshots
    give nothing: their content is not in packs, so every file is read and packed once."""
    for manifest in reversed(MEDIA_SNAPSHOTS.list(storage).backups):
        if manifest.source == source:
            return _Previous(iter_entries(storage, manifest) if manifest.packed else None)
    return _Previous()
