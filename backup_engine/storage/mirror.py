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
from backup_engine.storage.base import ObjectWriter, Storage
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
        logs.warning(
            f"repository {number} ({store.url}) could not {what} {key}: {exc.one_line()}; "
            f"acknowledge = any, so the other repositories hold it: fill this one with "
            f"backup-engine storage copy --from 1 --to {number}"
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
        for number, store in enumerate(mirror.stores, 1):
            self._guarded(number, "write", partial(self._open, store, number, metadata))

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
            if not self._writers:  # "any", and no repository is left for this object
                raise exc

    def _write(self, data: bytes | bytearray) -> None:
        for number, writer in list(self._writers.items()):
            self._guarded(number, "write", partial(writer.write, data))

    def _commit(self) -> None:
        for number, writer in list(self._writers.items()):
            self._guarded(number, "store", writer.commit)

    def _abort(self) -> None:
        for writer in self._writers.values():
            writer.abort()
        self._writers.clear()
