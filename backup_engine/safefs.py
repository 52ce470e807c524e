"""Writing a restored tree without ever leaving it, whatever the repository says.

A tar member or a media entry is repository input: a symlink `a -> /etc` followed by a file
`a/passwd`, a file named like an earlier symlink, `../x`, a hard link to `/etc/shadow`. Restores
run as root on database hosts, and Debian's Python 3.11.2 has no tarfile extraction filter, so
every write here goes through directory file descriptors opened from the target's root with
O_NOFOLLOW, one component at a time: a symlink anywhere on the way is refused, never followed.
Files are created with O_EXCL (nothing existing is overwritten or written through), modes lose
their setuid/setgid bits unless asked, and times and modes are set on the open descriptor.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from backup_engine.errors import CorruptObject, TargetWriteFailed
from backup_engine.streams import Chunks

CHUNK = 1 << 20
_TARGET_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO)
_OPEN_DIRS = 64  # directory fds kept open while restoring
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def split_relative(name: str, where: str) -> list[str]:
    """The components of a relative path inside the target; refuse anything that is not."""
    if not name or "\0" in name or name.startswith("/"):
        raise CorruptObject(f"{where} holds an unsafe path {name!r}; refusing to restore it")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise CorruptObject(f"{where} holds an unsafe path {name!r}; refusing to restore it")
    return parts


def write_all(fd: int, data: bytes | memoryview, offset: int | None = None) -> None:
    """All of `data` (at `offset`, or the file position): a short write is retried."""
    view = memoryview(data)
    while view:
        done = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset)
        if not done:  # never loop without progress
            raise OSError(errno.EIO, "the write made no progress")
        view = view[done:]
        if offset is not None:
            offset += done


@dataclass(frozen=True)
class Attributes:
    mode: int  # permission bits (and setuid/setgid/sticky, dropped unless keep_setid)
    mtime_ns: int | None = None
    uid: int | None = None  # applied only when running as root
    gid: int | None = None


class SafeTree:
    """Creates entries below `root` (an existing directory we made or own)."""

    # what the caller does with a failed restore (prepared_target removes what was written)
    write_failed_hint = (
        "free space or fix permissions there, or restore elsewhere; what was restored so far "
        "is removed"
    )

    def __init__(self, root: str | os.PathLike[str], where: str, *, keep_setid: bool = False):
        self.where = where
        self.keep_setid = keep_setid
        self.chown = os.geteuid() == 0
        self._root = os.open(root, _DIR_FLAGS)
        self._dirs: list[tuple[list[str], Attributes]] = []
        # Files may be written from several threads: each keeps its own directory fds (no lock
        # to contend for); every cache is listed here, to be closed at the end.
        self._local = threading.local()
        self._caches: list[OrderedDict[tuple[str, ...], int]] = []
        self._caches_lock = threading.Lock()

    @property
    def _open_dirs(self) -> OrderedDict[tuple[str, ...], int]:
        cache: OrderedDict[tuple[str, ...], int] | None = getattr(self._local, "dirs", None)
        if cache is None:
            cache = self._local.dirs = OrderedDict()
            with self._caches_lock:
                self._caches.append(cache)
        return cache

    def close(self) -> None:
        self._forget_dirs()
        os.close(self._root)

    def __enter__(self) -> SafeTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- walking -----------------------------------------------------------------------------

    def _refuse(self, path: list[str], why: str) -> CorruptObject:
        return CorruptObject(f"{self.where}: {'/'.join(path)!r} {why}; refusing to restore it")

    @contextmanager
    def _directory(self, parts: list[str], *, create: bool = True) -> Iterator[int]:
        """An fd for the directory `parts` below the root, made (0700) where missing. The fds
        of recent directories are kept (each was reached component by component with
        O_NOFOLLOW, and only this tree writes below the root), so a file in a deep folder
        costs one open, not one per component."""
        key = tuple(parts)
        cache = self._open_dirs
        cached = cache.get(key)
        if cached is not None:  # a dup: an eviction by a nested call cannot close it under us
            cache.move_to_end(key)
            fd = os.dup(cached)
            try:
                yield fd
            finally:
                os.close(fd)
            return
        start, base = 0, self._root
        for i in range(len(parts) - 1, 0, -1):
            if (prefix := cache.get(key[:i])) is not None:
                start, base = i, prefix
                break
        fd = os.dup(base)
        try:
            for i, part in enumerate(parts[start:], start):
                try:
                    following = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    with suppress(FileExistsError):  # another writing thread made it just now
                        os.mkdir(part, 0o700, dir_fd=fd)
                    following = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise self._refuse(
                            parts[: i + 1], "is a symbolic link or a file, not a directory"
                        ) from None
                    raise
                os.close(fd)
                fd = following
            if parts:
                cache[key] = os.dup(fd)
                if len(cache) > _OPEN_DIRS:
                    os.close(cache.popitem(last=False)[1])
            yield fd
        finally:
            os.close(fd)

    def _forget_dirs(self) -> None:
        """Close every thread's cached directories (the writing threads have ended)."""
        with self._caches_lock:
            for cache in self._caches:
                while cache:
                    os.close(cache.popitem()[1])

    @contextmanager
    def _guard(self, name: str) -> Iterator[None]:
        """OS errors as one clear line: the disk or permissions (naming the path), or the
        entry itself being impossible (which only a damaged or forged tree produces)."""
        try:
            yield
        except OSError as exc:
            if exc.errno in _TARGET_ERRNOS:
                raise TargetWriteFailed(
                    f"cannot write {name!r} in the restore target: {exc.strerror}",
                    hint=self.write_failed_hint,
                ) from None
            raise CorruptObject(
                f"{self.where}: {name!r} cannot be restored ({exc.strerror}); refusing it"
            ) from None

    def _mode(self, mode: int) -> int:
        keep = 0o7777 if self.keep_setid else 0o1777
        return mode & keep

    def _own(self, fd: int, attrs: Attributes) -> None:
        if self.chown and attrs.uid is not None and attrs.gid is not None:
            os.fchown(fd, attrs.uid, attrs.gid)

    # --- entries -----------------------------------------------------------------------------

    def _mkdir(self, name: str, attrs: Attributes) -> None:
        parts = split_relative(name, self.where)
        with self._directory(parts[:-1]) as parent:
            try:
                os.mkdir(parts[-1], 0o700, dir_fd=parent)
            except FileExistsError:
                st = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    raise self._refuse(parts, "exists and is not a directory") from None
        self._dirs.append((parts, attrs))  # modes and times last: children change mtimes

    def _write_file(self, name: str, content: Chunks, size: int, attrs: Attributes) -> int:
        """Create a new file with exactly `size` bytes of `content`; returns bytes written."""
        parts = split_relative(name, self.where)
        key = tuple(parts[:-1])
        cache = self._open_dirs
        parent = cache.get(key) if key else self._root
        if parent is None:
            with self._directory(parts[:-1]) as opened:
                return self._create(opened, parts, content, size, attrs)
        if key:
            cache.move_to_end(key)  # used at once: nothing can evict it meanwhile
        return self._create(parent, parts, content, size, attrs)

    def _create(
        self, parent: int, parts: list[str], content: Chunks, size: int, attrs: Attributes
    ) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(parts[-1], flags, 0o600, dir_fd=parent)
        except FileExistsError:
            raise self._refuse(parts, "appears twice (or names an existing entry)") from None
        try:
            written = 0
            while written < size:
                chunk = content.read(min(CHUNK, size - written))
                if not chunk:
                    raise self._refuse(parts, f"ends after {written} of {size} bytes")
                write_all(fd, chunk)
                written += len(chunk)
            self._settle(fd, attrs)
        finally:
            os.close(fd)
        return written

    def _settle(self, fd: int, attrs: Attributes) -> None:
        """A written file's owner, mode and time, set on its open descriptor."""
        self._own(fd, attrs)
        os.fchmod(fd, self._mode(attrs.mode))
        if attrs.mtime_ns is not None:
            os.utime(fd, ns=(attrs.mtime_ns, attrs.mtime_ns))

    def _symlink(self, name: str, target: str, attrs: Attributes | None = None) -> None:
        """A symlink is created as data and never followed by anything here."""
        parts = split_relative(name, self.where)
        if not target or "\0" in target:
            raise self._refuse(parts, "is a symbolic link without a target")
        with self._directory(parts[:-1]) as parent:
            try:
                os.symlink(target, parts[-1], dir_fd=parent)
            except FileExistsError:
                raise self._refuse(parts, "appears twice (or names an existing entry)") from None
            if attrs is not None and self.chown and attrs.uid is not None:
                os.chown(parts[-1], attrs.uid, attrs.gid or 0, dir_fd=parent,
                         follow_symlinks=False)  # fmt: skip

    def _hardlink(self, name: str, existing: str) -> None:
        """A second name for a regular file restored earlier in this same tree."""
        parts = split_relative(name, self.where)
        source = split_relative(existing, self.where)
        with (
            self._directory(source[:-1], create=False) as source_dir,
            self._directory(parts[:-1]) as parent,
        ):
            st = os.stat(source[-1], dir_fd=source_dir, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                raise self._refuse(parts, f"is a hard link to {existing!r}, not a regular file")
            try:
                os.link(source[-1], parts[-1], src_dir_fd=source_dir, dst_dir_fd=parent,
                        follow_symlinks=False)  # fmt: skip
            except FileExistsError:
                raise self._refuse(parts, "appears twice (or names an existing entry)") from None

    def mkdir(self, name: str, attrs: Attributes) -> None:
        with self._guard(name):
            self._mkdir(name, attrs)

    def write_file(self, name: str, content: Chunks, size: int, attrs: Attributes) -> int:
        """Create a new file with exactly `size` bytes of `content`; returns bytes written."""
        with self._guard(name):
            return self._write_file(name, content, size, attrs)

    def symlink(self, name: str, target: str, attrs: Attributes | None = None) -> None:
        """A symlink is created as data and never followed by anything here."""
        with self._guard(name):
            self._symlink(name, target, attrs)

    def hardlink(self, name: str, existing: str) -> None:
        """A second name for a regular file restored earlier in this same tree."""
        with self._guard(name):
            self._hardlink(name, existing)

    def forget(self, name: str) -> None:
        """Remove a regular file this tree began to write (a failed entry leaves nothing)."""
        parts = split_relative(name, self.where)
        try:
            with self._directory(parts[:-1], create=False) as parent:
                st = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
                if stat.S_ISREG(st.st_mode):
                    os.unlink(parts[-1], dir_fd=parent)
        except (OSError, CorruptObject):
            pass  # nothing was created, or not by us

    def set_root(self, attrs: Attributes) -> None:
        """The target directory itself gets the recorded mode and time (at the end)."""
        self._dirs.append(([], attrs))

    def finish(self) -> None:
        """Directory modes and times, deepest first (a read-only directory is filled first)."""
        with self._guard("(directory attributes)"):
            self._finish()

    def _finish(self) -> None:
        self._forget_dirs()
        for parts, attrs in sorted(self._dirs, key=lambda d: len(d[0]), reverse=True):
            with self._directory(parts, create=False) as fd:
                self._own(fd, attrs)
                os.fchmod(fd, self._mode(attrs.mode))
                if attrs.mtime_ns is not None:
                    os.utime(fd, ns=(attrs.mtime_ns, attrs.mtime_ns))
        self._dirs.clear()
