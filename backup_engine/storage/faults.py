"""Storage wrappers: ones that fail on purpose (for drills and tests of what happens when the
store breaks) and a read-only view. A wrapper delegates everything to the store it wraps, like
restic's backend wrappers."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import IO

from backup_engine.errors import StorageUnreachable, UsageError
from backup_engine.storage.base import ObjectInfo, ObjectWriter, Storage
from backup_engine.storage.object_lock import LockState, ObjectLock


class StorageWrapper(Storage):
    """Passes every call through to `inner`; subclasses override what they change."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.url = inner.url

    def writer(
        self, key: str, *, metadata: Mapping[str, str] | None = None, if_absent: bool = False
    ) -> ObjectWriter:
        return self.inner.writer(key, metadata=metadata, if_absent=if_absent)

    def open_reader(self, key: str) -> IO[bytes]:
        return self.inner.open_reader(key)

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        return self.inner.read_range(key, offset, length)

    def stat(self, key: str) -> ObjectInfo:
        return self.inner.stat(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def check(self) -> None:
        self.inner.check()

    def environment(self) -> dict[str, str]:
        return self.inner.environment()

    def encryption_info(self) -> dict[str, str] | None:
        return self.inner.encryption_info()

    @property
    def object_lock(self) -> ObjectLock | None:
        return self.inner.object_lock

    def lock_state(self, key: str) -> LockState:
        return self.inner.lock_state(key)

    def store_now(self) -> datetime:
        return self.inner.store_now()

    def set_legal_hold(self, key: str, on: bool) -> None:
        self.inner.set_legal_hold(key, on)


class FailingWrites(StorageWrapper):
    """Refuses to write keys that `matches` selects, as a store that went away would."""

    def __init__(self, inner: Storage, matches: Callable[[str], bool]) -> None:
        super().__init__(inner)
        self.matches = matches

    def writer(
        self, key: str, *, metadata: Mapping[str, str] | None = None, if_absent: bool = False
    ) -> ObjectWriter:
        if self.matches(key):
            raise StorageUnreachable(f"injected fault: the store refused to write {key}")
        return super().writer(key, metadata=metadata, if_absent=if_absent)


class ReadOnlyStorage(StorageWrapper):
    """A store the drill may only read: a production repository is evidence, not a scratch pad."""

    def writer(
        self, key: str, *, metadata: Mapping[str, str] | None = None, if_absent: bool = False
    ) -> ObjectWriter:
        raise UsageError(f"refusing to write {key}: {self.url} is opened read-only")

    def delete(self, key: str) -> None:
        raise UsageError(f"refusing to delete {key}: {self.url} is opened read-only")
