"""Packs: many small blobs in one object, so a tree of small files costs a few requests.

A blob is one file's content, or one chunk of a large file: named by the sha256 of its
plaintext, compressed on its own (so it can be read back with one ranged GET), appended to a
pack. A pack is named by the sha256 of its bytes (`media/packs/<ab>/<sha256>`). Where each blob
lives is recorded in the index (index.py), never inside the pack: a pack is plain data.

Uploads run in a small thread pool while the walk goes on reading; at most `concurrency` + 1
packs are in memory at once (each about PACK_TARGET bytes, as stored), so memory is bounded
whatever the tree holds.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import struct
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import zstandard

from backup_engine.errors import CorruptObject, ObjectExists
from backup_engine.integrity import Expected, check_bytes
from backup_engine.storage.base import Storage

PACKS_PREFIX = "media/packs/"
PACK_TARGET = 12 << 20  # bytes per pack as stored: 4 in flight + 1 filling stay near 60 MiB
CHUNK_SIZE = 4 << 20  # large files are cut into blobs of this size
MAX_STORED = CHUNK_SIZE + (CHUNK_SIZE >> 6) + 4096  # zstd's worst case for one blob, bounded
BLOB_CODECS = ("zstd", "none")
_PACK_KEY = re.compile(r"^media/packs/([0-9a-f]{2})/([0-9a-f]{64})$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
TRAILER_MAGIC = b"RDPK1"


def pack_key(sha256: str) -> str:
    return f"{PACKS_PREFIX}{sha256[:2]}/{sha256}"


def is_pack_key(key: str) -> bool:
    match = _PACK_KEY.match(key)
    return bool(match) and match is not None and match.group(2).startswith(match.group(1))


def chunks_of(data_size: int) -> int:
    """How many blobs a file of this size is cut into (0 for an empty file)."""
    return -(-data_size // CHUNK_SIZE)


def open_blob(codec: str, stored: bytes, blob_id: str, size: int) -> bytes:
    """The blob's plaintext, which must be exactly `size` bytes hashing to `blob_id`;
    decompression never produces more than `size` (+1 to notice more)."""
    try:
        if codec == "none":
            data = stored
        else:
            reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(stored))
            parts: list[bytes] = []
            left = size + 1  # one byte more than recorded is enough to refuse it
            while left > 0 and (part := reader.read(left)):
                parts.append(part)
                left -= len(part)
            data = b"".join(parts)
    except zstandard.ZstdError as exc:
        raise CorruptObject(f"blob {blob_id[:16]} does not decompress ({exc})") from None
    if len(data) != size:  # said as one: a blob's size is part of what its id names
        raise CorruptObject(f"blob {blob_id[:16]} does not match its sha256")
    return check_bytes(data, Expected(blob_id, size, blob_id, name=f"blob {blob_id[:16]}"))


def pack_trailer(blob_ids: list[str]) -> bytes:
    """What a pack says about itself, after its blobs: the ids it holds. Prune reads it before
    deleting a pack, so a forged index cannot make it delete blobs a kept snapshot uses."""
    ids = b"".join(bytes.fromhex(blob_id) for blob_id in blob_ids)
    return ids + struct.pack(">I", len(blob_ids)) + TRAILER_MAGIC


def read_pack_blob_ids(storage: Storage, key: str, size: int) -> list[str]:
    """The blob ids a pack's trailer lists; CorruptObject if it has no valid trailer."""
    tail = len(TRAILER_MAGIC) + 4
    if size < tail:
        raise CorruptObject(f"{key} is too short to be a pack")
    end = storage.read_range(key, size - tail, tail)
    count = struct.unpack(">I", end[:4])[0]
    if end[4:] != TRAILER_MAGIC or count * 32 > size - tail:
        raise CorruptObject(f"{key} does not end like a pack this tool writes")
    ids = storage.read_range(key, size - tail - count * 32, count * 32)
    return [ids[i : i + 32].hex() for i in range(0, len(ids), 32)]


@dataclass(frozen=True, slots=True)  # one per blob: a million of them in a big index
class PackedBlob:
    blob_id: str
    offset: int  # in the pack
    length: int  # stored (compressed) bytes
    size: int  # plaintext bytes


BLOB_RECORD = struct.Struct(">32sQII")  # blob id, offset, length, size: as in the index


@dataclass(frozen=True)
class PackRecord:
    """A stored pack and its blobs, kept as 48-byte records (a backup holds the record of every
    pack it stored until it writes the index: PackedBlob objects cost ~250 bytes a blob)."""

    key: str
    size: int
    codec: str
    table: bytes  # BLOB_RECORD after BLOB_RECORD, in pack order

    @classmethod
    def of(cls, key: str, size: int, codec: str, blobs: Iterable[PackedBlob]) -> PackRecord:
        table = b"".join(BLOB_RECORD.pack(bytes.fromhex(b.blob_id), b.offset, b.length, b.size)
                         for b in blobs)  # fmt: skip
        return cls(key, size, codec, table)

    @property
    def count(self) -> int:
        return len(self.table) // BLOB_RECORD.size

    def raw_blobs(self) -> Iterator[tuple[bytes, int, int, int]]:
        """(raw blob id, offset, length, size) of each blob, without building objects."""
        return BLOB_RECORD.iter_unpack(self.table)

    @property
    def blobs(self) -> tuple[PackedBlob, ...]:
        return tuple(PackedBlob(raw.hex(), offset, length, size)
                     for raw, offset, length, size in self.raw_blobs())  # fmt: skip


@dataclass
class _Batch:
    content: bytearray = field(default_factory=bytearray)  # the pack's bytes, as stored
    blobs: list[PackedBlob] = field(default_factory=list)


class PackUploader:
    """Packs blobs and stores each pack from a worker thread. A blob is compressed as it is
    added (zstd's own threads for big ones), so a pack is in memory once, as stored: at most
    `concurrency` packs in flight plus the one being filled. `add` blocks while all workers
    are busy; an upload failure surfaces at the next pack or at finish."""

    def __init__(self, storage: Storage, codec: str, level: int, concurrency: int) -> None:
        self.storage = storage
        self.codec = codec
        self._small = zstandard.ZstdCompressor(level=level, write_checksum=True)
        self._large = zstandard.ZstdCompressor(level=level, write_checksum=True, threads=-1)
        self._slots = threading.BoundedSemaphore(concurrency)
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="pack")
        self._batch = _Batch()
        self._futures: list[Future[PackRecord]] = []

    def add(self, blob_id: str, data: bytes) -> None:
        if self.codec == "none":
            stored = data
        else:
            stored = (self._large if len(data) >= 1 << 20 else self._small).compress(data)
        batch = self._batch
        batch.blobs.append(PackedBlob(blob_id, len(batch.content), len(stored), len(data)))
        batch.content += stored
        if len(batch.content) >= PACK_TARGET:
            self._flush()

    def _flush(self) -> None:
        if not self._batch.blobs:
            return
        batch, self._batch = self._batch, _Batch()
        batch.content += pack_trailer([b.blob_id for b in batch.blobs])
        self._slots.acquire()
        for done in (f for f in self._futures if f.done()):
            done.result()  # raise a failed upload now, not after the whole walk
        self._futures.append(self._pool.submit(self._store, batch))

    def _store(self, batch: _Batch) -> PackRecord:
        try:
            content = batch.content
            key = pack_key(hashlib.sha256(content).hexdigest())
            with contextlib.suppress(ObjectExists):  # stored already: the name is their hash
                self.storage.put_bytes(key, content, if_absent=True)  # no copy of it made
            return PackRecord.of(key, len(content), self.codec, batch.blobs)
        finally:
            self._slots.release()

    def finish(self) -> list[PackRecord]:
        """Store the last pack and wait for every upload; the records for the index."""
        try:
            self._flush()
            return [future.result() for future in self._futures]
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def abort(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
