"""Restoring and verifying format-2 (packed) media snapshots.

Files are restored BATCH at a time, in the order of the walk (which is pack order: packs
fill as the tree is walked). Files of one blob (nearly all media files) are grouped by pack: a
job fetches the part of a pack they need (ranged GETs, neighbouring blobs merged into one
request), opens each blob, checking its sha256, and writes its files through SafeTree (each
thread with its own directory fds); `concurrency` threads run the jobs while the main thread
reads the list and queues them. Large files are written blob by blob, the next blobs fetched
ahead in parallel. At most 2 x `concurrency` fetches (each up to 2 MiB) are in memory at once.
"""

from __future__ import annotations

import fnmatch
import io
import os
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

from backup_engine.errors import CorruptObject, ObjectNotFound
from backup_engine.media.entries import entries_list, iter_entries
from backup_engine.media.index import BlobLocation, MediaIndex, load_index
from backup_engine.media.manifest import MediaEntry, MediaSnapshotManifest
from backup_engine.media.packs import open_blob
from backup_engine.progress import ProgressTask
from backup_engine.safefs import Attributes, SafeTree
from backup_engine.storage.base import Storage
from backup_engine.streams import Readable

MERGE_GAP = 256 << 10  # blobs closer than this in a pack are fetched by one request
RUN_MAX = 2 << 20  # ... up to this many bytes per request
BATCH = 5000  # files planned and fetched together (their packs grouped, runs merged)


Fetched = dict[str, bytes | str]  # blob id -> its plaintext, or why it cannot be had


class Unavailable(Exception):
    """A blob that cannot be had: missing from the index or its pack, or not its sha256."""


def _run_groups(blobs: Sequence[tuple[str, BlobLocation]]) -> list[list[tuple[str, BlobLocation]]]:
    """Neighbouring blobs of one pack as runs, each fetched by one ranged GET of at most
    RUN_MAX bytes (the unit of memory a fetch holds)."""
    runs: list[list[tuple[str, BlobLocation]]] = []
    for blob in sorted(blobs, key=lambda b: b[1].offset):
        first = runs[-1][0][1] if runs else None
        last = runs[-1][-1][1] if runs else None
        if (
            first is not None
            and last is not None
            and blob[1].offset - (last.offset + last.length) <= MERGE_GAP
            and blob[1].offset + blob[1].length - first.offset <= RUN_MAX
        ):
            runs[-1].append(blob)
        else:
            runs.append([blob])
    return runs


def fetch_jobs(
    groups: dict[str, list[tuple[str, BlobLocation]]],
) -> Iterator[tuple[str, list[tuple[str, BlobLocation]]]]:
    for pack, blobs in groups.items():
        for run in _run_groups(blobs):
            yield pack, run


def fetch_blobs(
    storage: Storage, pack: str, blobs: Sequence[tuple[str, BlobLocation]]
) -> dict[str, bytes | str]:
    """The plaintext of each blob, or why it cannot be had (a string)."""
    out: dict[str, bytes | str] = {}
    for run in _run_groups(blobs):
        start = run[0][1].offset
        end = max(loc.offset + loc.length for _, loc in run)
        try:
            data = storage.read_range(pack, start, end - start)
        except ObjectNotFound:
            out.update((blob_id, f"pack {pack} is missing") for blob_id, _ in run)
            continue
        except CorruptObject as exc:
            out.update((blob_id, exc.message) for blob_id, _ in run)
            continue
        for blob_id, loc in run:
            stored = data[loc.offset - start : loc.offset - start + loc.length]
            try:
                out[blob_id] = open_blob(loc.codec, stored, blob_id, loc.size)
            except CorruptObject as exc:
                out[blob_id] = f"{exc.message} (in pack {pack})"
    return out


@dataclass
class Selection:
    """`--include`: an entry is restored when it, or a directory above it, matches a pattern
    (shell-style, matched against the whole path inside the snapshot)."""

    patterns: tuple[str, ...] = ()

    def wants(self, path: str) -> bool:
        if not self.patterns:
            return True
        parts = path.split("/")
        prefixes = ("/".join(parts[: i + 1]) for i in range(len(parts)))
        return any(fnmatch.fnmatchcase(p, pat) for p in prefixes for pat in self.patterns)


@dataclass
class _Written:
    """What one fetch-and-write job did, summed up by the main thread."""

    files: int = 0
    bytes: int = 0
    size: int = 0  # recorded sizes, for the progress bar
    failed: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class PackedRestore:
    storage: Storage
    tree: SafeTree
    task: ProgressTask
    concurrency: int
    selection: Selection = field(default_factory=Selection)
    files: int = 0
    bytes: int = 0
    failed: list[str] = field(default_factory=list)
    _dirs: dict[str, MediaEntry] = field(default_factory=dict)
    _made: set[str] = field(default_factory=set)
    _lost: set[str] = field(default_factory=set)  # paths named in `failed`
    _jobs: deque[Future[_Written]] = field(default_factory=deque)
    _writing: threading.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        # Creating small files waits on the journal on a disk: two writers at once overlap
        # the waits; on 2 cores more only fight for the GIL (200,000 files onto ext4: one
        # writer 105 s, two 53-65 s; onto tmpfs, where nothing waits: 9.8, 12.8, 4 writers 15).
        self._writing = threading.Semaphore(max(1, min(self.concurrency, os.cpu_count() or 1)))

    def _fail(self, path: str, why: str) -> None:
        self.failed.append(f"{path}: {why}")
        self._lost.add(path)

    def run(self, manifest: MediaSnapshotManifest) -> None:
        """Two passes over the (checked) list of entries: the first reads and checks all of
        it, so a list forged halfway writes nothing; the second restores as it reads, files
        fetched BATCH at a time, so memory does not grow with the number of files."""
        with (
            entries_list(self.storage, manifest) as entries,
            ThreadPoolExecutor(self.concurrency, thread_name_prefix="restore") as pool,
        ):
            try:
                self._run(entries, pool)
            finally:
                for job in self._jobs:
                    job.cancel()  # after an error: queued jobs never start, running ones end

    def _run(self, entries: Callable[[], Iterator[MediaEntry]], pool: ThreadPoolExecutor) -> None:
        wants = self.selection.wants
        link_targets: set[str] = set()  # --include: first names of wanted hard links
        for entry in entries():
            if entry.type == "dir" and self.selection.patterns:
                self._dirs[entry.path] = entry
            if entry.type == "hardlink" and wants(entry.path) and not wants(entry.target or ""):
                link_targets.add(entry.target or "")
        index = load_index(self.storage)
        singles: list[MediaEntry] = []
        large: list[MediaEntry] = []
        links: list[MediaEntry] = []
        known_files: dict[str, MediaEntry] = {}
        for entry in entries():
            if entry.type == "file" and entry.path in link_targets:
                known_files[entry.path] = entry
            if not wants(entry.path):
                continue
            self._parents(entry.path)
            if entry.type == "dir":
                self._mkdir(entry)
            elif entry.type == "file":
                (large if len(entry.blobs()) > 1 else singles).append(entry)
            elif entry.type == "hardlink" and entry.target in known_files:
                target = known_files[entry.target]  # its first name is not restored: a copy
                copy = MediaEntry(entry.path, "file", target.mode, target.mtime_ns,
                                  target.size, target.sha256, chunks=target.chunks)  # fmt: skip
                (large if len(copy.blobs()) > 1 else singles).append(copy)
            else:
                links.append(entry)
            if len(singles) + len(large) >= BATCH:
                self._files(index, singles, large, pool)
        self._files(index, singles, large, pool)
        while self._jobs:  # every file is written before its second names are linked
            self._collect()
        for entry in links:
            self._guarded(entry, partial(self._link, entry))

    def _files(self, index: MediaIndex, singles: list[MediaEntry], large: list[MediaEntry],
               pool: ThreadPoolExecutor) -> None:  # fmt: skip
        self._singles(index, singles, pool)
        for entry in large:
            self._guarded(entry, partial(self._large, index, entry))
        singles.clear()
        large.clear()

    def _parents(self, path: str) -> None:
        parts = path.split("/")[:-1]
        for i in range(len(parts)):
            parent = "/".join(parts[: i + 1])
            if parent not in self._made and parent in self._dirs:
                self._mkdir(self._dirs[parent])

    def _mkdir(self, entry: MediaEntry) -> None:
        if entry.path not in self._made:
            self._made.add(entry.path)
            self.tree.mkdir(entry.path, Attributes(entry.mode, entry.mtime_ns))

    def _link(self, entry: MediaEntry) -> None:
        assert entry.target is not None
        if entry.type == "symlink":
            self.tree.symlink(entry.path, entry.target)
        elif entry.target in self._lost:
            raise Unavailable(f"it is a second name of {entry.target}, which was not restored")
        else:
            self.tree.hardlink(entry.path, entry.target)

    def _guarded(self, entry: MediaEntry, restore: Callable[[], None]) -> None:
        try:
            restore()
        except Unavailable as exc:
            self._fail(entry.path, str(exc))
            self.tree.forget(entry.path)

    def _write(self, entry: MediaEntry, content: Readable) -> int:
        attrs = Attributes(entry.mode, entry.mtime_ns)
        return self.tree.write_file(entry.path, content, entry.size, attrs)

    def _singles(self, index: MediaIndex, entries: list[MediaEntry],
                 pool: ThreadPoolExecutor) -> None:  # fmt: skip
        """Files of one blob, grouped by the run of a pack that holds them: each run is one
        job, fetched and its files written by a pool thread, so the creation of many small
        files (disk-bound: 0.1 to 0.5 ms each on a journaling file system) overlaps. At most
        2 x concurrency jobs are queued: memory does not grow with the batch."""
        by_pack: dict[str, list[tuple[str, BlobLocation]]] = defaultdict(list)
        waiting: dict[str, list[MediaEntry]] = defaultdict(list)
        for entry in entries:
            if not entry.size:
                self._count(_Written(files=1, bytes=self._write(entry, io.BytesIO(b""))))
                continue
            blob_id = entry.blobs()[0]
            location = index.location(blob_id)
            if location is None:
                self._fail(entry.path, f"blob {blob_id[:16]} is in no index")
                continue
            if blob_id not in waiting:
                by_pack[location.pack].append((blob_id, location))
            waiting[blob_id].append(entry)
        for pack, blobs in fetch_jobs(by_pack):
            while len(self._jobs) >= 2 * self.concurrency:
                self._collect()
            files = {blob_id: waiting.pop(blob_id) for blob_id, _ in blobs}
            self._jobs.append(pool.submit(self._fetch_and_write, pack, blobs, files))

    def _fetch_and_write(self, pack: str, blobs: list[tuple[str, BlobLocation]],
                         files: dict[str, list[MediaEntry]]) -> _Written:  # fmt: skip
        done = _Written()
        fetched = fetch_blobs(self.storage, pack, blobs)
        with self._writing:
            self._write_fetched(fetched, files, done)
        return done

    def _write_fetched(self, fetched: Fetched, files: dict[str, list[MediaEntry]],
                       done: _Written) -> None:  # fmt: skip
        for blob_id, data in fetched.items():
            for entry in files.get(blob_id, ()):
                if isinstance(data, str):
                    done.failed.append((entry.path, data))
                elif len(data) != entry.size:
                    done.failed.append((entry.path, f"its blob holds {len(data)} bytes, "
                                                    f"the snapshot says {entry.size}"))  # fmt: skip
                else:
                    done.bytes += self._write(entry, io.BytesIO(data))
                    done.files += 1
                    done.size += entry.size

    def _collect(self) -> None:
        self._count(self._jobs.popleft().result())  # a job's error is raised here

    def _count(self, done: _Written) -> None:
        self.files += done.files
        self.bytes += done.bytes
        self.task.advance(done.size)
        for path, why in done.failed:
            self._fail(path, why)

    def _large(self, index: MediaIndex, entry: MediaEntry) -> None:
        locations = []
        for blob_id in entry.blobs():
            location = index.location(blob_id)
            if location is None:
                raise Unavailable(f"blob {blob_id[:16]} is in no index")
            locations.append((blob_id, location))
        if sum(location.size for _, location in locations) != entry.size:
            raise Unavailable(f"its blobs do not add up to the {entry.size} bytes recorded")
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="fetch") as pool:
            content = _Blobs(self.storage, pool, locations, self.concurrency)
            self._count(_Written(files=1, bytes=self._write(entry, content), size=entry.size))


class _Blobs:
    """A large file's content, blob by blob, the next ones fetched in parallel."""

    def __init__(
        self,
        storage: Storage,
        pool: ThreadPoolExecutor,
        blobs: list[tuple[str, BlobLocation]],
        ahead: int,
    ) -> None:
        self._pending = iter(blobs)
        self._storage, self._pool = storage, pool
        self._ahead: deque[tuple[str, Future[dict[str, bytes | str]]]] = deque()
        self._current = memoryview(b"")
        for _ in range(ahead):
            self._submit()

    def _submit(self) -> None:
        for blob_id, location in self._pending:
            fetch = self._pool.submit(fetch_blobs, self._storage, location.pack,
                                      [(blob_id, location)])  # fmt: skip
            self._ahead.append((blob_id, fetch))
            return

    def read(self, size: int = -1, /) -> bytes:
        if not self._current:
            if not self._ahead:
                return b""
            blob_id, fetch = self._ahead.popleft()
            data = fetch.result()[blob_id]
            self._submit()
            if isinstance(data, str):
                raise Unavailable(data)
            self._current = memoryview(data)
        n = len(self._current) if size < 0 else min(size, len(self._current))
        chunk, self._current = self._current[:n], self._current[n:]
        return bytes(chunk)


def needed_blobs(storage: Storage, manifest: MediaSnapshotManifest) -> set[bytes]:
    """Every blob the snapshot's files name, as raw ids: 32 bytes each, not 64 characters."""
    needed: set[bytes] = set()
    for entry in iter_entries(storage, manifest):
        needed.update(bytes.fromhex(blob_id) for blob_id in entry.blobs())
    return needed


def packed_blobs_by_pack(
    index: MediaIndex, blob_ids: set[bytes]
) -> tuple[dict[str, list[bytes]], list[str]]:
    """Needed blobs (raw ids) grouped by pack, and the ids (hex) no index knows."""
    groups: dict[str, list[bytes]] = defaultdict(list)
    unknown = []
    for raw in blob_ids:
        location = index.location_of(raw)
        if location is None:
            unknown.append(raw.hex())
        else:
            groups[location.pack].append(raw)
    return groups, sorted(unknown)


def verify_packed(
    storage: Storage, manifest: MediaSnapshotManifest, concurrency: int
) -> Iterator[tuple[str, str | None]]:
    """(blob id, None) for each blob of the snapshot that opens to its sha256, (id, why) else."""
    index = load_index(storage)
    groups, unknown = packed_blobs_by_pack(index, needed_blobs(storage, manifest))
    for blob_id in unknown:
        yield blob_id, "is in no index"

    def located(raws: list[bytes]) -> list[tuple[str, BlobLocation]]:
        pairs = ((raw.hex(), index.location_of(raw)) for raw in sorted(raws))
        return [(blob_id, loc) for blob_id, loc in pairs if loc is not None]

    def check(pack: str, blobs: list[tuple[str, BlobLocation]]) -> dict[str, str | None]:
        got = fetch_blobs(storage, pack, blobs)  # one pack at most per worker in memory
        return {blob_id: data if isinstance(data, str) else None for blob_id, data in got.items()}

    # Locations are made a pack at a time: for every blob at once they cost 150 bytes each.
    jobs = ((pack, run) for pack in sorted(groups) for run in _run_groups(located(groups[pack])))
    with ThreadPoolExecutor(concurrency, thread_name_prefix="verify") as pool:
        ahead: deque[Future[dict[str, str | None]]] = deque()
        for pack, blobs in jobs:
            ahead.append(pool.submit(check, pack, blobs))
            if len(ahead) < concurrency:
                continue
            yield from ahead.popleft().result().items()
        while ahead:
            yield from ahead.popleft().result().items()
