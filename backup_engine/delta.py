"""Delta restores: a tree rewritten in place, only where it differs from the backup.

A replica that fell behind or a data directory with a few damaged files holds nearly everything
the backup holds. `DeltaTree` is a `SafeTree` that, instead of refusing an existing entry,
compares it: a regular file is read block by block beside the backup's bytes and only the blocks
that differ are written (then cut to the backup's size); an entry of another type is removed and
made new; a symlink pointing elsewhere is replaced. Content is always compared, never trusted
from a size or a time (pgBackRest's `--delta` compares checksums too): a file can change and
keep both. At `finish`, every entry the backup did not hold is removed, so the tree ends exactly
the backup's; with `sweep_top=False` (a tablespace directory, which other majors' servers may
share) only what lies below the backup's own top-level entries is swept.

Walking and creating stay SafeTree's: O_NOFOLLOW from the root, one component at a time.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from dataclasses import dataclass

from backup_engine.safefs import CHUNK, Attributes, SafeTree, split_relative, write_all
from backup_engine.streams import Chunks

BLOCK = 8192  # PostgreSQL's page: what one changed row dirties
SPAN = 8 * BLOCK
WAL_DIR = "pg_wal"


@dataclass
class DeltaStats:
    """What a delta restore did, over every tree it rewrote."""

    compared: int = 0  # bytes of existing files read and compared with the backup
    written: int = 0  # bytes written (changed blocks and new files)
    wal_written: int = 0  # of which into pg_wal/ (the backup's own WAL: never there before)
    kept: int = 0  # files found identical, left untouched
    changed: int = 0  # files written in part or whole, or created
    removed: int = 0  # entries the backup does not hold, removed


class DeltaTree(SafeTree):
    """A SafeTree over an existing tree that writes only what differs (one writing thread)."""

    write_failed_hint = "free space or fix permissions there"  # nothing is removed: the caller
    # (delta_target.py) leaves the directory unstartable and says how to finish

    def __init__(
        self,
        root: str | os.PathLike[str],
        where: str,
        stats: DeltaStats,
        *,
        sweep_top: bool = True,
        keep: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(root, where)
        self.stats, self.sweep_top, self.keep = stats, sweep_top, keep
        self.seen: set[tuple[str, ...]] = set()
        self._buffer = bytearray(CHUNK)  # what is on disk, read where the backup's bytes go
        self._old = memoryview(self._buffer)

    def _note(self, parts: list[str]) -> None:
        for i in range(1, len(parts) + 1):
            self.seen.add(tuple(parts[:i]))

    def _clear(self, parent: int, name: str) -> bool:
        """Remove the entry `name` of whatever type (a directory with what it holds); True
        when there was one."""
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=parent)  # fd-based: never follows a link inside
        else:
            os.unlink(name, dir_fd=parent)
        self.stats.removed += 1
        return True

    def _mkdir(self, name: str, attrs: Attributes) -> None:
        parts = self._parts(name)
        with self._directory(parts[:-1]) as parent:
            try:
                st = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                pass
            else:
                if not stat.S_ISDIR(st.st_mode):
                    self._clear(parent, parts[-1])
        super()._mkdir(name, attrs)

    def _parts(self, name: str) -> list[str]:
        parts = split_relative(name, self.where)
        self._note(parts)
        return parts

    def _create(
        self, parent: int, parts: list[str], content: Chunks, size: int, attrs: Attributes
    ) -> int:
        self._note(parts)
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(parts[-1], flags, dir_fd=parent)
        except FileNotFoundError:
            fd = -1
        except OSError as exc:  # a symlink, a directory, a file we may not write: replaced
            if exc.errno not in (errno.ELOOP, errno.EISDIR, errno.EACCES, errno.EPERM):
                raise
            self._clear(parent, parts[-1])
            fd = -1
        if fd >= 0 and not _own_regular_file(fd):
            os.close(fd)  # a FIFO or a device where a file belongs, or a file linked elsewhere
            self._clear(parent, parts[-1])
            fd = -1
        if fd < 0:
            written = super()._create(parent, parts, content, size, attrs)
            self.stats.changed += 1
        else:
            try:
                written = self._rewrite(fd, parts, content, size, attrs)
            finally:
                os.close(fd)
        self.stats.written += written
        if parts[0] == WAL_DIR:
            self.stats.wal_written += written
        return size

    def _rewrite(
        self, fd: int, parts: list[str], content: Chunks, size: int, attrs: Attributes
    ) -> int:
        """Compare the file with the backup's `size` bytes, writing the blocks that differ;
        returns the bytes written."""
        had = os.fstat(fd).st_size
        position = written = 0
        while position < size:
            chunk = content.read(min(CHUNK, size - position))
            if not chunk:
                raise self._refuse(parts, f"ends after {position} of {size} bytes")
            data = memoryview(chunk)
            length = len(data)
            # read into one reused buffer, compared with startswith (memcmp, no copy): a new
            # bytes object per MiB costs page faults, and == on a memoryview goes item by item
            got = os.preadv(fd, [self._old[:length]], position) if position < had else 0
            self.stats.compared += got
            if got != length or not self._buffer.startswith(data):
                written += _write_differing(fd, self._buffer, got, data, position)
            position += length
        if had != size:
            os.ftruncate(fd, size)
        if written or had != size:
            self.stats.changed += 1
        else:
            self.stats.kept += 1
        self._settle(fd, attrs)
        return written

    def _symlink(self, name: str, target: str, attrs: Attributes | None = None) -> None:
        parts = self._parts(name)
        with self._directory(parts[:-1]) as parent:
            try:
                same = os.readlink(parts[-1], dir_fd=parent) == target
            except FileNotFoundError:
                same = False
            except OSError:  # not a symlink
                same = False
                self._clear(parent, parts[-1])
            if same:
                return
            self._clear(parent, parts[-1])
        super()._symlink(name, target, attrs)

    def _hardlink(self, name: str, existing: str) -> None:
        parts = self._parts(name)
        with self._directory(parts[:-1]) as parent:
            self._clear(parent, parts[-1])
        super()._hardlink(name, existing)

    def finish(self) -> None:
        with self._guard("(entries the backup does not hold)"):
            self._sweep()
        super().finish()

    def _sweep(self) -> None:
        """Remove every entry below the root the backup did not hold (see the module doc)."""
        self._forget_dirs()
        for path, dirs, files, fd in os.fwalk(".", dir_fd=self._root):
            where = tuple(p for p in path.split("/") if p not in ("", "."))
            if not where and not self.sweep_top:
                dirs[:] = [d for d in dirs if (d,) in self.seen]
                continue
            for name in [*dirs, *files]:
                if (*where, name) in self.seen or (not where and name in self.keep):
                    continue
                self._clear(fd, name)
                if name in dirs:
                    dirs.remove(name)


def _write_differing(fd: int, old: bytearray, got: int, data: memoryview, position: int) -> int:
    """Write the BLOCKs of `data` that differ from the `got` bytes of `old` at `position`;
    returns bytes written. Spans of 64 KiB are compared first: fewer Python steps."""
    written = 0
    for span in range(0, len(data), SPAN):
        if span + SPAN <= got and old.startswith(data[span : span + SPAN], span):
            continue
        for at in range(span, min(span + SPAN, len(data)), BLOCK):
            block = data[at : at + BLOCK]
            if at + len(block) > got or not old.startswith(block, at):
                write_all(fd, block, position + at)
                written += len(block)
    return written


def _own_regular_file(fd: int) -> bool:
    """A regular file with no other name: one pg_upgrade --link shares with the old cluster
    must not be written through, so it is replaced, not rewritten in place."""
    st = os.fstat(fd)
    return stat.S_ISREG(st.st_mode) and st.st_nlink == 1
