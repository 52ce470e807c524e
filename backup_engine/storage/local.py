"""A repository in a local directory (`file:///var/backups/restore-drill`).

Writes go to a hidden temporary file in the target directory and are renamed into place on
commit, so a crash never leaves a half-written object under its real name.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from backup_engine.errors import ObjectNotFound, StorageError, StorageUnreachable
from backup_engine.storage.base import ObjectInfo, ObjectWriter, Storage, check_key

_PARTIAL_MARK = ".partial-"


class _LocalWriter(ObjectWriter):
    def __init__(self, key: str, final: Path) -> None:
        super().__init__(key)
        self._final = final
        final.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = final.with_name(f".{final.name}{_PARTIAL_MARK}{uuid.uuid4().hex}")
        self._file = self._tmp.open("xb")

    def _write(self, data: bytes) -> None:
        self._file.write(data)

    def _commit(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tmp, self._final)
        dir_fd = os.open(self._final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)


class LocalStorage(Storage):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"file://{root}"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def writer(self, key: str) -> ObjectWriter:
        try:
            return _LocalWriter(key, self._path(key))
        except OSError as exc:
            raise StorageError(f"cannot write {key} under {self.root}: {exc.strerror}") from exc

    def open_reader(self, key: str) -> IO[bytes]:
        try:
            return self._path(key).open("rb")
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"object {key} not found in {self.url}") from exc

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFound(f"object {key} not found in {self.url}")
        return ObjectInfo(key=key, size=path.stat().st_size)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if not self.root.is_dir():
            return
        found = []
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if _PARTIAL_MARK in name:
                    continue
                path = Path(dirpath) / name
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found.append(ObjectInfo(key=key, size=path.stat().st_size))
        yield from sorted(found, key=lambda info: info.key)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def check(self) -> None:
        if not self.root.is_dir():
            raise StorageUnreachable(
                f"repository directory {self.root} does not exist",
                hint="create it, or fix the repository url",
            )
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise StorageUnreachable(f"repository directory {self.root} is not readable")
