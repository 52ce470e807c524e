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
from dataclasses import dataclass, field
from typing import Any

import zstandard

from backup_engine.errors import CorruptObject, ObjectNotFound
from backup_engine.media.packs import (
    BLOB_CODECS,
    CHUNK_SIZE,
    MAX_STORED,
    SHA256,
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


@dataclass(frozen=True, slots=True)  # one per blob: a million of them in a big index
class BlobLocation:
    pack: str
    codec: str
    offset: int
    length: int
    size: int


@dataclass
class MediaIndex:
    locations: dict[str, BlobLocation] = field(default_factory=dict)
    packs: dict[str, PackRecord] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)  # index objects read
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (key, why)

    def add(self, record: PackRecord) -> None:
        self.packs[record.key] = record
        for blob in record.blobs:
            self.locations.setdefault(
                blob.blob_id,
                BlobLocation(record.key, record.codec, blob.offset, blob.length, blob.size),
            )


def encode_index(records: list[PackRecord]) -> bytes:
    body = {
        "kind": KIND,
        "format_version": 1,
        "packs": [
            {
                "key": r.key,
                "size": r.size,
                "codec": r.codec,
                "blobs": [[b.blob_id, b.offset, b.length, b.size] for b in r.blobs],
            }
            for r in records
        ],
    }
    raw = json.dumps(body, separators=(",", ":")).encode()
    return zstandard.ZstdCompressor(level=3, write_checksum=True).compress(raw)


def _int(value: Any, low: int, high: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{what} {value!r} is out of range")
    return value


def _record(item: Any) -> PackRecord:
    if not isinstance(item, dict):
        raise ValueError("a pack is not an object")
    key, codec, blobs = item.get("key"), item.get("codec"), item.get("blobs")
    if not isinstance(key, str) or not is_pack_key(key):
        raise ValueError(f"pack key {key!r}")
    if codec not in BLOB_CODECS:
        raise ValueError(f"pack {key} has codec {codec!r}")
    size = _int(item.get("size"), 0, 1 << 40, "pack size")
    if not isinstance(blobs, list):
        raise ValueError(f"pack {key} has no blob list")
    parsed: list[PackedBlob] = []
    end = 0
    for blob in blobs:
        if not (isinstance(blob, list) and len(blob) == 4):
            raise ValueError(f"pack {key}: a blob is not [id, offset, length, size]")
        blob_id, offset, length, plain = blob
        if not isinstance(blob_id, str) or not SHA256.match(blob_id):
            raise ValueError(f"pack {key}: blob id {blob_id!r}")
        offset = _int(offset, end, size, "blob offset")  # in order, never overlapping
        length = _int(length, 1, min(MAX_STORED, size - offset), "blob length")
        plain = _int(plain, 1, CHUNK_SIZE, "blob size")
        parsed.append(PackedBlob(blob_id, offset, length, plain))
        end = offset + length
    return PackRecord(key, size, str(codec), tuple(parsed))


def decode_index(data: bytes) -> list[PackRecord]:
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(data)
        parts: list[bytes] = []
        left = MAX_INDEX_BYTES + 1
        while left > 0 and (part := reader.read(min(left, 1 << 24))):
            parts.append(part)
            left -= len(part)
        raw = b"".join(parts)
    except zstandard.ZstdError as exc:
        raise ValueError(f"does not decompress ({exc})") from None
    if len(raw) > MAX_INDEX_BYTES:
        raise ValueError("is larger than any index this tool writes")
    try:
        body = json.loads(raw)
    except ValueError:
        raise ValueError("is not JSON") from None
    if not isinstance(body, dict) or body.get("kind") != KIND:
        raise ValueError("is not a media index")
    if body.get("format_version") != 1:
        raise ValueError(f"has format {body.get('format_version')!r}, newer than this tool")
    packs = body.get("packs")
    if not isinstance(packs, list):
        raise ValueError("has no pack list")
    return [_record(item) for item in packs]


def write_index(storage: Storage, name: str, records: list[PackRecord]) -> str:
    key = index_key(name)
    storage.put_bytes(key, encode_index(records), if_absent=True)
    return key


def load_index(storage: Storage) -> MediaIndex:
    """Every readable index object merged; the others listed in `unreadable`."""
    index = MediaIndex()
    for info in storage.list(INDEX_PREFIX):
        try:
            records = decode_index(storage.get_bytes(info.key))
        except ValueError as exc:
            index.unreadable.append((info.key, str(exc)))
            continue
        except CorruptObject as exc:  # e.g. does not decrypt with this key
            index.unreadable.append((info.key, exc.message))
            continue
        except ObjectNotFound:  # replaced by a prune meanwhile
            continue
        index.sources.append(info.key)
        for record in records:
            index.add(record)
    return index
