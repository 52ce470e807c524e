"""The storage contract every backend fulfils.

Keys are relative, '/'-separated paths inside the repository (for example
`postgres/base/20261125T020000Z/backup.json`); a backend maps them onto its own namespace.

Contract (the shared test suite in tests/test_storage.py checks it against every backend):
- `writer(key)` returns an `ObjectWriter`. Nothing is visible under `key` until `commit()`
  returns; `abort()` (or leaving the `with` block by an exception) leaves no object behind.
  Writers hash what they store, so the caller gets size and sha256 without a second read.
- `writer(key, metadata=...)` stores small string metadata with the object; `stat` returns it
  (`list` need not). Keys are lowercase letters, digits and '-'.
- `writer(key, if_absent=True)` never replaces an object: `commit()` raises `ObjectExists` if
  the key is taken, atomically where the backend can (S3 conditional writes, link(2) locally).
- A key that does not exist raises `ObjectNotFound` from `open_reader`, `get_bytes` and `stat`;
  every other failure raises another `StorageError` subclass.
- `delete` is idempotent: deleting a missing key is not an error.
- `list(prefix)` yields every committed object whose key starts with `prefix`, sorted by key,
  with its size and the time it was written (`modified`).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import IO

from backup_engine.errors import CorruptObject, ObjectNotFound, UsageError
from backup_engine.storage.object_lock import LockState, ObjectLock


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    metadata: Mapping[str, str] = field(default_factory=dict)
    modified: datetime | None = None  # when the object was written (UTC)
    etag: str | None = None  # the store's tag of this version of the content, where it has one


@dataclass(frozen=True)
class StoredObject:
    """What a writer committed: enough to verify the object later."""

    key: str
    size: int
    sha256: str


def valid_key(key: str) -> bool:
    # No part may start with ".": local stores keep temporary files and metadata under such names.
    return bool(key) and not any(p == "" or p.startswith(".") for p in key.split("/"))


def check_key(key: str) -> str:
    """Refuse keys that could escape the repository or are ambiguous between backends."""
    if not valid_key(key):
        raise UsageError(f"invalid storage key {key!r}")
    return key


def addressable(found: list[ObjectInfo], where: str) -> list[ObjectInfo]:
    """What a listing may yield: objects this tool can name. One it never writes (a dot-
    directory, an empty part: someone else's) is left out with one warning line, never a
    configuration error for the whole catalog."""
    kept = [info for info in found if valid_key(info.key)]
    if len(kept) < len(found):
        from backup_engine import logs

        odd = next(info.key for info in found if not valid_key(info.key))
        logs.warning(f"ignored {len(found) - len(kept)} object(s) in {where} whose names this "
                     f"tool never writes, e.g. {odd!r}")  # fmt: skip
    return kept


class ObjectWriter(ABC):
    """Streams one object into storage; commit makes it visible, abort discards it."""

    def __init__(
        self, key: str, *, metadata: Mapping[str, str] | None = None, if_absent: bool = False
    ) -> None:
        self.key = check_key(key)
        self.metadata = dict(metadata or {})
        self.if_absent = if_absent
        self.size = 0
        self._sha256 = hashlib.sha256()
        self._done = False

    def write(self, data: bytes | bytearray) -> None:
        if not data:
            return
        self._sha256.update(data)
        self.size += len(data)
        self._write(data)

    def commit(self) -> StoredObject:
        self._commit()
        self._done = True
        return StoredObject(key=self.key, size=self.size, sha256=self._sha256.hexdigest())

    def abort(self) -> None:
        if not self._done:
            self._done = True
            self._abort()

    def __enter__(self) -> ObjectWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # The caller commits explicitly (it needs the StoredObject); whatever was not committed
        # when the block ends, normally or not, is discarded.
        self.abort()

    @abstractmethod
    def _write(self, data: bytes | bytearray) -> None: ...

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _abort(self) -> None: ...


class Storage(ABC):
    """A place to keep backups: an S3 bucket prefix or a local directory."""

    url: str

    @abstractmethod
    def writer(
        self, key: str, *, metadata: Mapping[str, str] | None = None, if_absent: bool = False
    ) -> ObjectWriter: ...

    @abstractmethod
    def open_reader(self, key: str) -> IO[bytes]: ...

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo: ...

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def check(self) -> None:
        """Raise a `StorageUnreachable` subclass unless the store can be read."""

    def encryption_info(self) -> dict[str, str] | None:
        """How the tool encrypts what it stores here (algorithm, key id), or None."""
        return None

    @property
    def object_lock(self) -> ObjectLock | None:
        """The Object Lock retention this store puts on what it writes, or None."""
        return None

    def lock_state(self, key: str) -> LockState:
        """What protects `key` from deletion now (Object Lock); nothing, where there is none."""
        return LockState(until=None)

    def store_now(self) -> datetime:
        """The time by the store's clock (the one that judges when a lock ends)."""
        return datetime.now(UTC)

    def set_legal_hold(self, key: str, on: bool) -> None:
        """Keep `key` undeletable with no end date (Object Lock's legal hold), or stop."""
        raise UsageError(f"{self.url} has no Object Lock: a legal hold needs an S3 bucket")

    def environment(self) -> dict[str, str]:
        """Variables another process needs to open this same store from its URL (`--repo`),
        e.g. PostgreSQL running archive_command. Empty when the URL says it all."""
        return {}

    def put_bytes(
        self,
        key: str,
        data: bytes | bytearray,
        *,
        metadata: Mapping[str, str] | None = None,
        if_absent: bool = False,
    ) -> StoredObject:
        with self.writer(key, metadata=metadata, if_absent=if_absent) as out:
            out.write(data)
            return out.commit()

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """Exactly `length` bytes of an object from `offset` (a short object is an error).
        This generic one reads up to the range; stores that can seek or ask for a range do."""
        with self.open_reader(key) as stream:
            if getattr(stream, "seekable", lambda: False)():
                stream.seek(offset)
            else:
                left = offset
                while left > 0 and (skipped := stream.read(min(left, 1 << 20))):
                    left -= len(skipped)
            parts: list[bytes] = []
            left = length
            while left > 0 and (part := stream.read(left)):
                parts.append(part)
                left -= len(part)
        if left:
            raise CorruptObject(f"object {key} ends before byte {offset + length}")
        return b"".join(parts)

    def get_bytes(self, key: str) -> bytes:
        with self.open_reader(key) as stream:
            return stream.read()

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True
