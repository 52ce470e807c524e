"""Restore targets: a directory must be empty, or moved aside with --force, never deleted."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from backup_engine.errors import TargetNotEmpty, UsageError


@contextmanager
def prepared_target(
    path: Path, *, force: bool, in_use: Callable[[Path], str | None] | None = None
) -> Iterator[Path | None]:
    """Yield with `path` an empty directory; yield where --force moved its old contents.

    If the block fails, the directory is left as it was: what the restore wrote is removed and
    moved contents come back. `in_use` says why a directory must not be touched even with
    --force (a server running on it).
    """
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path} exists and is not a directory")
    moved: Path | None = None
    if path.exists() and any(path.iterdir()):
        reason = in_use(path) if in_use else None
        if reason is not None:
            raise TargetNotEmpty(reason, hint="stop it first; a restore never replaces live data")
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
    created = not path.exists()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        yield moved
    except BaseException:
        _clear_directory(path)
        if moved is not None:
            path.rmdir()
            moved.rename(path)
        elif created:
            path.rmdir()
        raise


def _clear_directory(path: Path) -> None:
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
