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

import errno
import glob
import json
import os
import pwd
import stat
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from backup_engine.errors import (
    ConfigError,
    CorruptObject,
    ObjectExists,
    ObjectNotFound,
    StorageError,
    StorageUnreachable,
)
from backup_engine.jsonsafe import loads_object
from backup_engine.storage.base import ObjectInfo, ObjectWriter, Storage, addressable, check_key

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


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def os_problem(verb: str, path: Path, exc: OSError) -> StorageError:
    """One line for an operating-system error on the repository: the path, what it means, what
    to do; never a traceback (exit 70) and never taken for "nothing there"."""
    me = _user(os.geteuid())
    if exc.errno in (errno.EACCES, errno.EPERM):
        owner = _owner(path)
        return StorageError(
            f"cannot {verb} {path}: permission denied (it belongs to {owner}, this runs as {me})",
            hint=f"run backup-engine as {owner}, the repository's owner",
        )
    hints = {errno.EROFS: "the file system is mounted read-only",
             errno.ENOSPC: "free space in the repository", errno.EDQUOT: "raise the quota",
             errno.ENOENT: "check the repository url, or create the directory"}  # fmt: skip
    hint = hints.get(exc.errno or 0, "check the repository directory")
    return StorageError(f"cannot {verb} {path}: {exc.strerror}", hint=hint)


def describe_owner(root: Path) -> str:
    owner = _user(root.stat().st_uid)
    return (f"belongs to {owner}: every command that writes to it (the server's "
            f"archive_command too) must run as {owner}")  # fmt: skip


def _owner(path: Path) -> str:
    for candidate in (path, *path.parents):
        try:
            return _user(candidate.stat().st_uid)
        except OSError:
            continue
    return "another user"


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "named pipe (FIFO)"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISDIR, "directory"), (stat.S_ISLNK, "symbolic link")):  # fmt: skip
        if test(mode):
            return name
    return "special file"


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
        try:
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
        except OSError as exc:
            self._abort()
            raise os_problem("write", self._final, exc) from None

    def _abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)
        self._sidecar_tmp.unlink(missing_ok=True)


def _adopt_metadata(path: Path) -> dict[str, str]:
    """The object's metadata; one left under its temporary name by a process killed between
    the two renames of a commit is moved into place."""
    sidecar = _metadata_path(path)
    try:
        return _metadata(sidecar.read_bytes(), sidecar)
    except FileNotFoundError:
        pass
    pending = sorted(path.parent.glob(f"{glob.escape(sidecar.name)}{_PARTIAL_MARK}*"))
    for candidate in pending:
        try:
            data = _metadata(candidate.read_bytes(), candidate)
        except (OSError, CorruptObject):
            continue
        os.replace(candidate, sidecar)
        return data
    return {}


def _metadata(data: bytes, path: Path) -> dict[str, str]:
    """A sidecar is repository data too: a map of strings, or the object is refused."""
    value = loads_object(data, where=str(path), limit=1 << 20)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise CorruptObject(f"{path} holds metadata that is not text")
    return value


def _info(key: str, path: Path, metadata: Mapping[str, str] | None = None) -> ObjectInfo:
    stat = path.stat()
    modified = datetime.fromtimestamp(stat.st_mtime, tz=UTC)
    return ObjectInfo(key=key, size=stat.st_size, metadata=metadata or {}, modified=modified)


class LocalStorage(Storage):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"file://{root}"
        self._owner_checked = False

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _check_owner(self) -> None:
        """A repository belongs to one user: what another wrote there (0700 directories, 0600
        files: backups are private) its owner could not use. The server's archive_command,
        running as postgres, failed on every segment after root's first backup made the
        directories; now the first write by the wrong user says so, before writing anything."""
        if self._owner_checked:
            return
        try:
            owner = self.root.stat().st_uid
        except FileNotFoundError:
            return  # made now, by this user
        except OSError as exc:
            raise os_problem("use", self.root, exc) from None
        if owner != os.geteuid():
            name, me = _user(owner), _user(os.geteuid())
            raise ConfigError(
                f"the repository {self.root} belongs to {name}, and this runs as {me}: what "
                f"{me} wrote there, {name} could not read or replace",
                hint=f"run backup-engine as {name} (the server's archive_command does), or "
                f"chown -R {me} {self.root} if the repository should be {me}'s",
            )
        self._owner_checked = True

    def writer(
        self, key: str, *, metadata: Mapping[str, str] | None = None, if_absent: bool = False
    ) -> ObjectWriter:
        self._check_owner()
        try:
            return _LocalWriter(
                key, self._path(key), self.root, metadata=metadata, if_absent=if_absent
            )
        except OSError as exc:
            raise os_problem("write", self._path(key), exc) from None

    def open_reader(self, key: str) -> IO[bytes]:
        """Only a regular file is an object: a FIFO would block the reader forever, a device or
        a symbolic link (not followed) is not something this tool wrote."""
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ObjectNotFound(f"object {key} not found in {self.url}") from None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EOPNOTSUPP):
                raise CorruptObject(f"{path} is a {_kind(path.lstat().st_mode)} where object "
                                    f"{key} should be: refused") from None  # fmt: skip
            raise os_problem("read", path, exc) from None
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise CorruptObject(f"{path} is a {_kind(mode)} where object {key} should be: refused")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            found = path.lstat()
        except FileNotFoundError:
            raise ObjectNotFound(f"object {key} not found in {self.url}") from None
        except OSError as exc:
            raise os_problem("read", path, exc) from None
        if stat.S_ISDIR(found.st_mode):
            raise ObjectNotFound(f"object {key} not found in {self.url}")
        if not stat.S_ISREG(found.st_mode):
            raise CorruptObject(
                f"{path} is a {_kind(found.st_mode)} where object {key} should be: refused"
            )
        try:
            return _info(key, path, _adopt_metadata(path))
        except OSError as exc:
            raise os_problem("read", path, exc) from None

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if not self.root.exists():
            return  # a repository not written yet: nothing in it
        found = []

        def unreadable(exc: OSError) -> None:  # a directory that cannot be read is not empty
            raise os_problem("list", Path(exc.filename or self.root), exc)

        for dirpath, dirs, files in os.walk(self.root, onerror=unreadable):
            dirs[:] = [d for d in dirs if not d.startswith(".")]  # never a key of ours
            for name in files:
                if name.startswith("."):  # temporary files and metadata sidecars
                    continue
                path = Path(dirpath) / name
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    try:
                        found.append(_info(key, path))
                    except OSError as exc:
                        raise os_problem("read", path, exc) from None
        yield from sorted(addressable(found, self.url), key=lambda info: info.key)

    def delete(self, key: str) -> None:
        self._check_owner()
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
            _metadata_path(path).unlink(missing_ok=True)
        except OSError as exc:
            raise os_problem("delete", path, exc) from None

    def check(self) -> None:
        if not self.root.is_dir():
            raise StorageUnreachable(
                f"repository directory {self.root} does not exist",
                hint="create it, or fix the repository url",
            )
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise StorageUnreachable(f"repository directory {self.root} is not readable")
        self._check_owner()
