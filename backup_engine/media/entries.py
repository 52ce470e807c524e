"""A snapshot's entries as a stream: written one JSON line at a time while the walk goes on,
read back one at a time, so memory does not grow with the number of files.

The entries object is untrusted: it is read whole into a spool file (memory, then a private
temporary file past 4 MiB) and checked against the size and sha256 that `snapshot.json` records
before a single entry is believed; then each entry is checked on its own (entry.problem) and
against the count.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from typing import IO, Any

import zstandard

from backup_engine.errors import CorruptObject, ObjectNotFound
from backup_engine.integrity import Expected, VerifyingReader
from backup_engine.manifests import StoredFile
from backup_engine.media.manifest import (
    MEDIA_SNAPSHOTS,
    MediaEntry,
    MediaSnapshotManifest,
    check_entries,
    decode_entry,
)
from backup_engine.storage.base import ObjectWriter, Storage

ENTRIES_NAME = "entries.jsonl.zst"
MAX_LINE = 64 << 20  # one entry: a path and, for a huge file, its list of blob ids
MAX_LIST = 4 << 30  # a list of entries, compressed: ten times what 10 million files need
_READ = 1 << 20
_LINES = 256 << 10  # JSON lines parsed at once: about 1,500 entries, 3 MB of Python objects
# A list bigger than this (about 80,000 files) waits in a private temporary file, not in
# memory: 10 MB less at 200,000 files for restore, verify and the second backup.
SPOOL_IN_MEMORY = 4 << 20


_FIELDS = tuple(f.name for f in fields(MediaEntry))


def encode_entry(entry: MediaEntry) -> bytes:
    # Not dataclasses.asdict: it deep-copies every value, a fifth of a first backup's time.
    data = {name: value for name in _FIELDS if (value := getattr(entry, name)) is not None}
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


class EntriesWriter:
    """Streams entries into `media/snapshots/<id>/entries.jsonl.zst` as they are found."""

    def __init__(self, storage: Storage, backup_id: str) -> None:
        self.key = f"{MEDIA_SNAPSHOTS.backup_prefix(backup_id)}{ENTRIES_NAME}"
        self._out: ObjectWriter = storage.writer(self.key, if_absent=True)
        self._zstd = zstandard.ZstdCompressor(level=3, write_checksum=True).compressobj()
        self.count = self.files = self.bytes = 0

    def add(self, entry: MediaEntry) -> None:
        self._out.write(self._zstd.compress(encode_entry(entry)))
        self.count += 1
        if entry.type == "file":
            self.files += 1
            self.bytes += entry.size

    def commit(self) -> StoredFile:
        self._out.write(self._zstd.flush())
        stored = self._out.commit()
        return StoredFile(ENTRIES_NAME, stored.key, stored.size, stored.sha256)

    def abort(self) -> None:
        self._out.abort()


def _checked_copy(storage: Storage, stored: StoredFile, where: str) -> IO[bytes]:
    if not 0 <= stored.size <= MAX_LIST:
        raise CorruptObject(f"{where}: its list of entries claims {stored.size} bytes")
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 - returned open
    expected = Expected(stored.key, stored.size, stored.sha256,
                        name=f"{where}: its list of entries ({stored.key})")  # fmt: skip
    try:
        with storage.open_reader(stored.key) as raw:
            checked = VerifyingReader(raw, expected)
            while chunk := checked.read(_READ):
                spool.write(chunk)
    except ObjectNotFound:
        spool.close()
        raise CorruptObject(f"{where}: its list of entries ({stored.key}) is missing") from None
    except CorruptObject:
        spool.close()
        raise
    spool.seek(0)
    return spool


def _values(spool: IO[bytes], where: str) -> Iterator[Any]:
    """The JSON value of each line, parsed a read at a time: one json.loads per _LINES bytes
    joined into an array, not one per line (a third of the time). A raw newline only ever
    separates lines (JSON escapes it inside strings), so a line that holds more than one
    value shows as more values than lines, and is refused."""
    reader = zstandard.ZstdDecompressor().stream_reader(spool, read_size=_READ)
    pending = b""
    try:
        while chunk := reader.read(_LINES):
            head, newline, pending = (pending + chunk).rpartition(b"\n")
            if newline:
                values = json.loads(b"[" + head.replace(b"\n", b",") + b"]")
                if len(values) != head.count(b"\n") + 1:
                    raise CorruptObject(f"{where}: a line of its list of entries is not one entry")
                yield from values
            if len(pending) > MAX_LINE:
                raise CorruptObject(f"{where}: an entry is longer than {MAX_LINE} bytes")
    except zstandard.ZstdError as exc:
        raise CorruptObject(f"{where}: its list of entries does not decompress ({exc})") from None
    except json.JSONDecodeError:  # its position is in the joined lines: not worth showing
        raise CorruptObject(f"{where}: its list of entries holds a line that is not JSON") from None
    except RecursionError:  # json nested deeper than the interpreter's stack
        raise CorruptObject(f"{where}: its list of entries nests too deeply") from None
    if pending:
        raise CorruptObject(f"{where}: its list of entries ends in the middle of a line")


def iter_entries(storage: Storage, manifest: MediaSnapshotManifest) -> Iterator[MediaEntry]:
    """Every entry of a snapshot, in the order of the walk (a directory before what it holds)."""
    with entries_list(storage, manifest) as entries:
        yield from entries()


@contextmanager
def entries_list(
    storage: Storage, manifest: MediaSnapshotManifest
) -> Iterator[Callable[[], Iterator[MediaEntry]]]:
    """The list downloaded and checked once; each call of what this yields reads it again,
    entry by entry, from that local copy (a restore reads it twice)."""
    if not manifest.packed:
        yield lambda: iter(manifest.entries)
        return
    where = f"media snapshot {manifest.backup_id}"
    if manifest.entries_object is None:
        raise CorruptObject(f"{where}: the manifest names no list of entries")
    with _checked_copy(storage, manifest.entries_object, where) as spool:
        checked = False  # every entry of this private copy passed its checks once

        def entries() -> Iterator[MediaEntry]:
            nonlocal checked
            spool.seek(0)
            if checked:  # the same bytes again: decoded, not checked a second time
                yield from (decode_entry(value) for value in _values(spool, where))
                return
            yield from _checked_entries(spool, manifest, where)
            checked = True

        yield entries


def _checked_entries(
    spool: IO[bytes], manifest: MediaSnapshotManifest, where: str
) -> Iterator[MediaEntry]:
    count = 0
    try:
        for entry in check_entries(
            (decode_entry(value) for value in _values(spool, where)), packed=True
        ):
            count += 1
            if count > manifest.entry_count:  # never more than recorded, even decompressed
                raise CorruptObject(
                    f"{where}: its list holds more than the {manifest.entry_count} entries "
                    "the manifest records"
                )
            yield entry
    except (ValueError, TypeError) as exc:
        raise CorruptObject(f"{where}: {exc}") from None
    if count != manifest.entry_count:
        raise CorruptObject(
            f"{where}: its list holds {count} entries, the manifest says {manifest.entry_count}"
        )
