"""The media index: which pack holds each blob, at which offset, how long, how big once opened.

Each media backup writes one index object (`media/index/<name>.json.zst`) for the packs it
stored; prune replaces the ones it read by one consolidated object. The index is untrusted like
everything in the repository: each object is checked as a whole (keys, codecs, offsets inside
their pack, sizes bounded by what a blob can be) and one that fails is set aside by name, never
half-used. Blob content is checked against its sha256 whenever it is read, so an index can at
worst point at the wrong bytes, which are then refused.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
from typing import Any

import zstandard

from backup_engine.errors import CorruptObject, ObjectNotFound
from backup_engine.media.packs import (
    BLOB_CODECS,
    BLOB_RECORD,
    CHUNK_SIZE,
    MAX_STORED,
    PackedBlob,
    PackRecord,
    is_pack_key,
)
from backup_engine.storage.base import Storage

INDEX_PREFIX = "media/index/"
KIND = "media-index"
MAX_INDEX_BYTES = 1 << 30  # decompressed; about ten million blobs
_NAME = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,120}$")


def index_key(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"index name {name!r}")
    return f"{INDEX_PREFIX}{name}.json.zst"


@dataclass(frozen=True, slots=True)  # a restore holds one per blob it fetches
class BlobLocation:
    pack: str
    codec: str
    offset: int
    length: int
    size: int


_RECORD = BLOB_RECORD  # one blob in the index
_WHERE = struct.Struct(">IQII")  # pack number, offset, length, size: one blob in memory


@dataclass
class MediaIndex:
    """Every blob's place, kept compact (a million blobs cost about 150 MB as dataclasses,
    under 60 MB as packed bytes): blob id (raw 32 bytes) -> pack number, offset, length, size."""

    pack_keys: list[str] = field(default_factory=list)
    pack_sizes: list[int] = field(default_factory=list)
    pack_codecs: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # index objects read
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (key, why)
    _where: dict[bytes, bytes] = field(default_factory=dict)
    _again: list[tuple[bytes, bytes]] = field(default_factory=list)  # a blob in a second pack
    _numbers: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, blob_id: object) -> bool:
        return isinstance(blob_id, str) and bytes.fromhex(blob_id) in self._where

    def has(self, raw: bytes) -> bool:
        return raw in self._where

    def location(self, blob_id: str) -> BlobLocation | None:
        return self.location_of(bytes.fromhex(blob_id))

    def location_of(self, raw: bytes) -> BlobLocation | None:
        packed = self._where.get(raw)
        if packed is None:
            return None
        number, offset, length, size = _WHERE.unpack(packed)
        return BlobLocation(self.pack_keys[number], self.pack_codecs[number], offset, length, size)

    def _pack(self, key: str, size: int, codec: str) -> int:
        number = self._numbers.get(key)
        if number is None:
            number = self._numbers[key] = len(self.pack_keys)
            self.pack_keys.append(key)
            self.pack_sizes.append(size)
            self.pack_codecs.append(codec)
        return number

    def _place(self, blob_id: bytes, where: bytes) -> None:
        """Reads use the first place; prune must see every pack that holds a blob (two
        backups running at once may each have packed the same new content)."""
        known = self._where.setdefault(blob_id, where)
        if known != where:
            self._again.append((blob_id, where))

    def add(self, record: PackRecord) -> None:
        number = self._pack(record.key, record.size, record.codec)
        for raw, offset, length, size in record.raw_blobs():
            self._place(raw, _WHERE.pack(number, offset, length, size))

    def records(self) -> dict[str, PackRecord]:
        """Each pack with the blobs the index places in it (built on demand: prune, tests)."""
        blobs: list[list[PackedBlob]] = [[] for _ in self.pack_keys]
        for raw, packed in [*self._where.items(), *self._again]:
            number, offset, length, size = _WHERE.unpack(packed)
            blobs[number].append(PackedBlob(raw.hex(), offset, length, size))
        return {
            key: PackRecord.of(key, self.pack_sizes[n], self.pack_codecs[n],
                               sorted(blobs[n], key=lambda b: b.offset))
            for n, key in enumerate(self.pack_keys)
        }  # fmt: skip

    def blob_ids(self) -> set[str]:
        return {raw.hex() for raw in self._where}


def encode_index(records: list[PackRecord]) -> bytes:
    """A JSON line naming the packs, then a table of 48-byte records, compressed: the index
    of a million blobs is read without a million JSON lists in memory."""
    header = {
        "kind": KIND,
        "format_version": 1,
        "packs": [
            {"key": r.key, "size": r.size, "codec": r.codec, "blobs": r.count} for r in records
        ],
    }
    table = b"".join(r.table for r in records)  # the same 48-byte records
    raw = json.dumps(header, separators=(",", ":")).encode() + b"\n" + table
    return zstandard.ZstdCompressor(level=3, write_checksum=True).compress(raw)


def _int(value: Any, low: int, high: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{what} {value!r} is out of range")
    return value


def _pack_header(item: Any) -> tuple[str, int, str, int]:
    if not isinstance(item, dict):
        raise ValueError("a pack is not an object")
    key, codec = item.get("key"), item.get("codec")
    if not isinstance(key, str) or not is_pack_key(key):
        raise ValueError(f"pack key {key!r}")
    if codec not in BLOB_CODECS:
        raise ValueError(f"pack {key} has codec {codec!r}")
    size = _int(item.get("size"), 0, 1 << 40, "pack size")
    count = _int(item.get("blobs"), 0, 1 << 24, f"pack {key}: blob count")
    return key, size, str(codec), count


def _decompressed(data: bytes) -> bytes:
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(data)
        parts: list[bytes] = []
        left = MAX_INDEX_BYTES + 1
        while left > 0 and (part := reader.read(min(left, 1 << 24))):
            parts.append(part)
            left -= len(part)
    except zstandard.ZstdError as exc:
        raise ValueError(f"does not decompress ({exc})") from None
    raw = b"".join(parts)
    if len(raw) > MAX_INDEX_BYTES:
        raise ValueError("is larger than any index this tool writes")
    return raw


def _decode_into(data: bytes, index: MediaIndex) -> None:
    """Check a whole index object, then add it to `index` (nothing of a bad one is added)."""
    raw = _decompressed(data)
    end = raw.find(b"\n")
    line = raw[:end] if end >= 0 else raw
    table = memoryview(raw)[end + 1 :] if end >= 0 else memoryview(b"")  # not a 9 MB copy
    try:
        header = json.loads(line)
    except (ValueError, RecursionError):
        raise ValueError("is not a media index") from None
    if not isinstance(header, dict) or header.get("kind") != KIND:
        raise ValueError("is not a media index")
    if header.get("format_version") != 1:
        raise ValueError(f"has format {header.get('format_version')!r}, newer than this tool")
    packs = header.get("packs")
    if not isinstance(packs, list):
        raise ValueError("has no pack list")
    headers = [_pack_header(item) for item in packs]
    if len(table) != _RECORD.size * sum(h[3] for h in headers):
        raise ValueError("has a blob table that does not match its pack list")
    # Two passes over the table: the first checks every record, the second places them, so
    # nothing of a bad index is added and no list of 200,000 checked tuples (40 MiB) is held.
    records = _RECORD.iter_unpack(table)
    for key, size, _, count in headers:
        end = 0
        for _ in range(count):
            _, offset, length, plain = next(records)
            offset = _int(offset, end, size, f"pack {key}: blob offset")  # in order, no overlap
            _int(length, 1, min(MAX_STORED, size - offset), f"pack {key}: blob length")
            _int(plain, 1, CHUNK_SIZE, f"pack {key}: blob size")
            end = offset + length
    records = _RECORD.iter_unpack(table)
    for key, size, codec, count in headers:
        number = index._pack(key, size, codec)
        for _ in range(count):
            blob_id, offset, length, plain = next(records)
            index._place(blob_id, _WHERE.pack(number, offset, length, plain))


def decode_index(data: bytes) -> list[PackRecord]:
    """An index object as pack records (ValueError if anything in it is wrong)."""
    index = MediaIndex()
    _decode_into(data, index)
    return list(index.records().values())


def write_index(storage: Storage, name: str, records: list[PackRecord]) -> str:
    key = index_key(name)
    storage.put_bytes(key, encode_index(records), if_absent=True)
    return key


def load_index(storage: Storage) -> MediaIndex:
    """Every readable index object merged; the others listed in `unreadable`."""
    index = MediaIndex()
    for info in storage.list(INDEX_PREFIX):
        try:
            _decode_into(storage.get_bytes(info.key), index)
        except ValueError as exc:
            index.unreadable.append((info.key, str(exc)))
            continue
        except CorruptObject as exc:  # e.g. does not decrypt with this key
            index.unreadable.append((info.key, exc.message))
            continue
        except ObjectNotFound:  # replaced by a prune meanwhile
            continue
        index.sources.append(info.key)
    return index
