"""One backup stream written to several repositories at once (repositories.py): every chunk
goes to each repository's writer as it arrives, so a base backup is read from PostgreSQL once
and never staged. Reads (listings, the previous backup of a chain, locks held) come from the
first repository; deletes go to all.

`acknowledge = "all"`: an object is written when every repository committed it; the first
failure aborts the others' uploads and is raised. `"any"`: a repository that fails is dropped
from this object (its upload aborted) with a warning naming it and the way to fill it (`storage
copy`); the write fails only when no repository holds the object.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial

from backup_engine import logs
from backup_engine.errors import BackupEngineError
from backup_engine.storage.base import ObjectWriter, Storage, StoredObject
from backup_engine.storage.faults import StorageWrapper


class MirroredStorage(StorageWrapper):
    def __init__(self, stores: Sequence[Storage], *, acknowledge: str = "all") -> None:
        super().__init__(stores[0])
        self.stores, self.acknowledge = list(stores), acknowledge

    def writer(
        self, key: str, *, metadata: Mapping[str, str] | None = None, if_absent: bool = False
    ) -> ObjectWriter:
        return _MirroredWriter(self, key, metadata=metadata, if_absent=if_absent)

    def delete(self, key: str) -> None:
        for number, store in enumerate(self.stores, 1):
            try:
                store.delete(key)
            except BackupEngineError as exc:
                self.failed(number, store, key, exc, "delete")

    def check(self) -> None:
        for store in self.stores:
            store.check()

    def failed(
        self, number: int, store: Storage, key: str, exc: BackupEngineError, what: str
    ) -> None:
        """A repository failed one object: fatal with "all", a warning with "any"."""
        if self.acknowledge == "all":
            raise exc
        warn_failed(number, store.url, f"{what} {key}", exc)


def warn_failed(number: int, url: str, what: str, exc: BackupEngineError) -> None:
    """With acknowledge = any: one repository missed a write the other holds, and how to fill
    it (two repositories: the other is 2 for the first, 1 for the second)."""
    logs.warning(
        f"repository {number} ({url}) could not {what}: {exc.one_line()}; acknowledge = any, "
        f"so the other holds it: fill this one with backup-engine storage copy --from "
        f"{2 if number == 1 else 1} --to {number}"
    )


class _MirroredWriter(ObjectWriter):
    def __init__(
        self,
        mirror: MirroredStorage,
        key: str,
        *,
        metadata: Mapping[str, str] | None,
        if_absent: bool,
    ) -> None:
        super().__init__(key, metadata=metadata, if_absent=if_absent)
        self._mirror = mirror
        self._writers: dict[int, ObjectWriter] = {}
        self._committed: dict[int, StoredObject] = {}
        self._failure: BackupEngineError | None = None
        self._opening = True  # a repository failing now still leaves the next ones to try
        for number, store in enumerate(mirror.stores, 1):
            self._guarded(number, "write", partial(self._open, store, number, metadata))
        self._opening = False
        if not self._writers and self._failure is not None:  # "any", and none could start
            raise self._failure

    def _open(self, store: Storage, number: int, metadata: Mapping[str, str] | None) -> None:
        self._writers[number] = store.writer(self.key, metadata=metadata,
                                             if_absent=self.if_absent)  # fmt: skip

    def _guarded(self, number: int, what: str, step: Callable[[], object]) -> None:
        try:
            step()
        except BackupEngineError as exc:
            writer = self._writers.pop(number, None)
            if writer is not None:
                writer.abort()
            if self._mirror.acknowledge == "all":
                self._abort()
            store = self._mirror.stores[number - 1]
            self._mirror.failed(number, store, self.key, exc, what)
            self._failure = exc
            if not self._writers and not self._opening:  # "any", and none is left
                raise exc

    def write(self, data: bytes | bytearray) -> None:
        """Straight to each repository's writer, each of which hashes what it stores: no
        third hash here."""
        if data:
            self.size += len(data)
            self._write(data)

    def commit(self) -> StoredObject:
        self._commit()
        self._done = True
        first = min(self._committed)  # every committed copy holds the same bytes
        return self._committed[first]

    def _write(self, data: bytes | bytearray) -> None:
        for number, writer in list(self._writers.items()):
            self._guarded(number, "write", partial(writer.write, data))

    def _commit(self) -> None:
        for number, writer in list(self._writers.items()):
            self._guarded(number, "store", partial(self._store, number, writer))

    def _store(self, number: int, writer: ObjectWriter) -> None:
        self._committed[number] = writer.commit()

    def _abort(self) -> None:
        for writer in self._writers.values():
            writer.abort()
        self._writers.clear()
