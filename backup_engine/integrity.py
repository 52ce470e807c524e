"""Checking what we read against the size and sha256 recorded when it was written: the one
home of a checked read. Every read of a stored object whose content we act on goes through
`VerifyingReader` (a stream: a base backup's tar, a WAL segment, a media file, a snapshot's list
of entries) or `check_bytes` (a media blob already in memory); what they check and how they
refuse is written here once, each caller only saying how its object is named to people."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import zstandard

from backup_engine.codecs import Codec
from backup_engine.errors import CorruptObject
from backup_engine.progress import Progress, ProgressTask
from backup_engine.storage import Storage
from backup_engine.streams import CountingReader, Readable

CHUNK = 1 << 20


DAMAGED = "the backup is damaged: restore an older backup, and check the store"


@dataclass(frozen=True)
class Expected:
    """What a read must produce. `size` None: not recorded (a WAL segment's content), and then
    never more than `limit` bytes (the most a file of its kind holds) is accepted."""

    key: str
    size: int | None
    sha256: str
    name: str = ""  # how messages name it: "stored object KEY" unless told
    hint: str = DAMAGED
    limit: int | None = None

    @classmethod
    def of(cls, stored: Any) -> Expected:
        """What a manifest recorded of one stored object (its key, size and sha256)."""
        return cls(stored.key, stored.size, stored.sha256)

    @property
    def most(self) -> int | None:
        return self.size if self.size is not None else self.limit

    def refuse(self, what: str) -> CorruptObject:
        return CorruptObject(f"{self.name or f'stored object {self.key}'} {what}", hint=self.hint)


def check_bytes(data: bytes, expected: Expected) -> bytes:
    """`data`, if it is what `expected` records (one piece already in memory)."""
    if expected.size is not None and len(data) != expected.size:
        raise expected.refuse(f"has {len(data)} bytes, {expected.size} recorded")
    if hashlib.sha256(data).hexdigest() != expected.sha256:
        raise expected.refuse("does not match its sha256")
    return data


class VerifyingReader:
    """Reads a stored object and raises `CorruptObject` at its end if it is not what was stored.

    The check happens when the stream is exhausted, so a consumer that streams the object
    (decompress, extract) learns of corruption before it declares success.
    """

    def __init__(self, raw: Readable, expected: Expected) -> None:
        self._raw = raw
        self._expected = expected
        self._sha256 = hashlib.sha256()
        self._size = 0
        self.checked = False

    def read(self, size: int = -1, /) -> bytes:
        data = self._raw.read(size)
        if data:
            self._sha256.update(data)
            self._size += len(data)
            most = self._expected.most
            if most is not None and self._size > most:
                raise self._expected.refuse(
                    f"is longer than the recorded {most} bytes" if self._expected.size is not None
                    else f"holds more than {most} bytes, the most a file of its kind holds: "
                    "refused as damaged"
                )  # fmt: skip
        elif size != 0:
            self.finish()
        return data

    def readable(self) -> bool:
        return True

    def finish(self) -> None:
        if self.checked:
            return
        size = self._expected.size
        if size is not None and self._size != size:
            raise self._expected.refuse(f"has {self._size} bytes, the manifest records {size}")
        if self._sha256.hexdigest() != self._expected.sha256:
            raise self._expected.refuse("does not match its recorded sha256")
        self.checked = True

    def drain(self) -> None:
        """Read to the end (a consumer may stop early, e.g. at a tar end marker) and check."""
        while self.read(CHUNK):
            pass
        self.finish()


def verify_object(storage: Storage, expected: Expected, progress: Progress | None = None) -> None:
    """Re-read one object completely and check it."""
    with (
        (progress or Progress()).task(f"verify {expected.key}", expected.size) as task,
        storage.open_reader(expected.key) as raw,
    ):
        reader = VerifyingReader(raw, expected)
        while data := reader.read(CHUNK):
            task.advance(len(data))
        reader.finish()


@contextmanager
def verified_content(
    storage: Storage, expected: Expected, codec: Codec, progress: ProgressTask
) -> Iterator[Readable]:
    """The decompressed content of a stored object, checked against its recorded sha256.

    The check runs when the caller is done, on every byte of the object (a consumer such as a
    tar reader may stop before the end). When decoding fails, the hash verdict is raised if the
    object is damaged: it names the object, which is the more useful message.
    """
    with storage.open_reader(expected.key) as raw:
        checked = VerifyingReader(CountingReader(raw, progress), expected)
        try:
            yield codec.open_decompressed(checked)
        except zstandard.ZstdError as exc:
            checked.drain()
            raise CorruptObject(f"{expected.key} does not decompress: {exc}") from None
        except CorruptObject:
            checked.drain()
            raise
        checked.drain()
