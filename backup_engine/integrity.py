"""Checking stored objects against the size and sha256 recorded when they were written."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import zstandard

from backup_engine.codecs import Codec
from backup_engine.errors import CorruptObject
from backup_engine.progress import Progress, ProgressTask
from backup_engine.storage import Storage
from backup_engine.streams import CountingReader, Readable

CHUNK = 1 << 20


@dataclass(frozen=True)
class Expected:
    key: str
    size: int
    sha256: str


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
            if self._size > self._expected.size:
                self._fail(f"is longer than the recorded {self._expected.size} bytes")
        elif size != 0:
            self.finish()
        return data

    def readable(self) -> bool:
        return True

    def finish(self) -> None:
        if self.checked:
            return
        if self._size != self._expected.size:
            self._fail(f"has {self._size} bytes, the manifest records {self._expected.size}")
        if self._sha256.hexdigest() != self._expected.sha256:
            self._fail("does not match its recorded sha256")
        self.checked = True

    def drain(self) -> None:
        """Read to the end (a consumer may stop early, e.g. at a tar end marker) and check."""
        while self.read(CHUNK):
            pass
        self.finish()

    def _fail(self, what: str) -> None:
        raise CorruptObject(
            f"stored object {self._expected.key} {what}",
            hint="the backup is damaged: restore an older backup, and check the store",
        )


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
