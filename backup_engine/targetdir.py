"""Restore targets: a directory must be empty, or moved aside with --force, never deleted.

One restore per target at a time: a lock file beside the target (`.<name>.restore-lock`, held
with flock for the whole restore) makes a second restore into the same directory fail at once
instead of interleaving its files with the first one's.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

from backup_engine.errors import TargetNotEmpty, TargetWriteFailed, UsageError


@contextmanager
def target_lock(path: Path) -> Iterator[None]:
    lock = path.parent / f".{path.name}.restore-lock"
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise _unwritable(path.parent, exc) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TargetNotEmpty(
                f"another restore into {path} is running", hint="wait for it to finish"
            ) from None
        try:
            yield
        finally:
            with suppress(FileNotFoundError):
                os.unlink(lock)
    finally:
        os.close(fd)


def checked_target(path: Path, in_use: Callable[[Path], str | None] | None) -> Path:
    """`path` made absolute, refused when it is a link, not a directory, or in use (`in_use`
    says why); its parent is created."""
    path = Path(os.path.abspath(path))
    if path.is_symlink():
        raise UsageError(f"{path} is a symbolic link", hint="give the real directory's path")
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path} exists and is not a directory")
    reason = in_use(path) if in_use else None
    if reason is not None:
        raise TargetNotEmpty(reason, hint="stop it first; a restore never replaces live data")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(path.parent, exc) from None
    return path


@contextmanager
def prepared_target(
    path: Path, *, force: bool, in_use: Callable[[Path], str | None] | None = None
) -> Iterator[Path | None]:
    """Yield with `path` an empty directory; yield where --force moved its old contents.

    If the block fails, the directory is left as it was: what the restore wrote is removed and
    moved contents come back. `in_use` says why a directory must not be touched at all, even
    empty and even with --force (a server running on, in or under it).
    """
    path = checked_target(path, in_use)
    with target_lock(path):
        moved = _move_aside(path, force=force)
        created = not path.exists()
        try:
            path.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise _unwritable(path, exc) from None
        try:
            yield moved
        except BaseException as exc:
            _clear_directory(path)
            if moved is not None:
                path.rmdir()
                moved.rename(path)
            elif created:
                path.rmdir()
            if isinstance(exc, OSError):  # a full disk, a read-only mount: named, not a trace
                raise _unwritable(path, exc) from None
            raise


def _unwritable(path: Path, exc: OSError) -> TargetWriteFailed:
    return TargetWriteFailed(
        f"cannot write into {path}: {exc.strerror or exc}",
        hint="free space or fix permissions there, or restore elsewhere; nothing was left behind",
    )


def _move_aside(path: Path, *, force: bool) -> Path | None:
    if not (path.exists() and any(path.iterdir())):
        return None
    if not force:
        raise TargetNotEmpty(
            f"{path} is not empty",
            hint="restore into an empty directory, or pass --force to move its contents "
            "aside (nothing is deleted)",
        )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    moved = path.with_name(f"{path.name}.before-restore-{stamp}")
    mode = path.stat().st_mode & 0o777
    try:
        path.rename(moved)
    except OSError as exc:
        raise TargetNotEmpty(
            f"cannot move the contents of {path} aside: {exc.strerror}",
            hint="empty the directory yourself (it may be a mount point)",
        ) from None
    path.mkdir(mode=mode)
    return moved


def _clear_directory(path: Path) -> None:
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
