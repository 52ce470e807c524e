"""A repository in a local directory (`file:///var/backups/restore-drill`).

Writes go to a hidden temporary file in the target directory and are renamed (or, for
`if_absent`, hard-linked, which fails if the name is taken) into place on commit, so a crash
never leaves a half-written object under its real name. Metadata lives in a hidden JSON file
beside the object. Both are written completely before the object appears, so a full disk fails
the write as a whole (a retry then succeeds) instead of leaving an object without metadata; a
process killed between the two renames leaves the finished metadata file behind, and the next
`stat` adopts it. Backups hold password hashes and session tokens: files are 0600 and
directories 0700, whatever the umask.
"""

from __future__ import annotations

import glob
import json
import os
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from backup_engine.errors import ObjectExists, ObjectNotFound, StorageError, StorageUnreachable
from backup_engine.storage.base import ObjectInfo, ObjectWriter, Storage, check_key

_PARTIAL_MARK = ".partial-"


def _metadata_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.meta.json")


def _fsync_dir(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _private_file(path: Path) -> IO[bytes]:
    return os.fdopen(
        os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), "wb"
    )


def _private_dirs(directory: Path, root: Path) -> None:
    """Create `directory` (and parents up to `root`) as 0700."""
    missing = []
    for parent in (directory, *directory.parents):
        if parent.exists() or parent == root.parent:
            break
        missing.append(parent)
    for parent in reversed(missing):
        try:
            parent.mkdir(mode=0o700)
        except FileExistsError:
            continue
        parent.chmod(0o700)  # the umask may have taken bits away, never added: be exact


def _write_durably(path: Path, data: bytes) -> None:
    with _private_file(path) as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _oserror(key: str, exc: OSError) -> StorageError:
    return StorageError(f"cannot write {key}: {exc.strerror}", hint="free space in the repository")


class _LocalWriter(ObjectWriter):
    def __init__(
        self,
        key: str,
        final: Path,
        root: Path,
        *,
        metadata: Mapping[str, str] | None,
        if_absent: bool,
    ) -> None:
        super().__init__(key, metadata=metadata, if_absent=if_absent)
        self._final = final
        _private_dirs(final.parent, root)
        self._tmp = final.with_name(f".{final.name}{_PARTIAL_MARK}{uuid.uuid4().hex}")
        self._sidecar_tmp = _metadata_path(final).with_name(
            f"{_metadata_path(final).name}{_PARTIAL_MARK}{uuid.uuid4().hex}"
        )
        self._file = _private_file(self._tmp)

    def _write(self, data: bytes | bytearray) -> None:
        try:
            self._file.write(data)
        except OSError as exc:
            raise _oserror(self.key, exc) from None

    def _commit(self) -> None:
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            if self.metadata:  # written in full before the object appears
                _write_durably(
                    self._sidecar_tmp, json.dumps(self.metadata, sort_keys=True).encode()
                )
        except OSError as exc:
            self._abort()
            raise _oserror(self.key, exc) from None
        sidecar = _metadata_path(self._final)
        if self.if_absent:
            try:
                os.link(self._tmp, self._final)  # fails, atomically, if the name is taken
            except FileExistsError:
                self._abort()
                raise ObjectExists(f"object {self.key} already exists") from None
            self._tmp.unlink()
        else:
            os.replace(self._tmp, self._final)
        if self.metadata:
            os.replace(self._sidecar_tmp, sidecar)
        else:
            sidecar.unlink(missing_ok=True)
        _fsync_dir(self._final.parent)

    def _abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)
        self._sidecar_tmp.unlink(missing_ok=True)


def _adopt_metadata(path: Path) -> dict[str, str]:
    """The object's metadata; one left under its temporary name by a process killed between
    the two renames of a commit is moved into place."""
    sidecar = _metadata_path(path)
    try:
        return dict(json.loads(sidecar.read_text()))
    except FileNotFoundError:
        pass
    pending = sorted(path.parent.glob(f"{glob.escape(sidecar.name)}{_PARTIAL_MARK}*"))
    for candidate in pending:
        try:
            data = dict(json.loads(candidate.read_text()))
        except (OSError, ValueError):
            continue
        os.replace(candidate, sidecar)
        return data
    return {}


def _info(key: str, path: Path, metadata: Mapping[str, str] | None = None) -> ObjectInfo:
    stat = path.stat()
    modified = datetime.fromtimestamp(stat.st_mtime, tz=UTC)
    return ObjectInfo(key=key, size=stat.st_size, metadata=metadata or {}, modified=modified)


class LocalStorage(Storage):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"file://{root}"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def writer(
        self, key: str, *, metadata: Mapping[str, str] | None = None, if_absent: bool = False
    ) -> ObjectWriter:
        try:
            return _LocalWriter(
                key, self._path(key), self.root, metadata=metadata, if_absent=if_absent
            )
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
        return _info(key, path, _adopt_metadata(path))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if not self.root.is_dir():
            return
        found = []
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.startswith("."):  # temporary files and metadata sidecars
                    continue
                path = Path(dirpath) / name
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found.append(_info(key, path))
        yield from sorted(found, key=lambda info: info.key)

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        _metadata_path(path).unlink(missing_ok=True)

    def check(self) -> None:
        if not self.root.is_dir():
            raise StorageUnreachable(
                f"repository directory {self.root} does not exist",
                hint="create it, or fix the repository url",
            )
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise StorageUnreachable(f"repository directory {self.root} is not readable")
