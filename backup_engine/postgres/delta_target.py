"""Where a delta restore (`pg restore --delta`) may write, and how it keeps a half-rewritten
directory from ever starting.

Refused before the first write: a target that is a link or not a directory; a server running
on, in or around it or a tablespace directory; a non-empty target that does not hold the
backup's own cluster (the system identifier in its pg_control, or in the marker an interrupted
delta restore left); a non-empty tablespace directory its pg_tblspc link does not name (another
cluster's, or anyone's files). An empty or missing target is simply restored.

Then the marker (`.restore-drill-delta`, the system identifier) is written and pg_control
removed: PostgreSQL does not start without it, and the backup's pg_control is the last member
of its archive, so an interrupted delta restore never leaves a directory that starts on mixed
files. A failure puts that state back (marker written, pg_control removed) and says so; running
the restore again compares what is there and finishes it. The marker goes before
pg_verifybackup, which would count it as an extra file.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from backup_engine.delta import DeltaStats, DeltaTree
from backup_engine.errors import BackupEngineError, TargetNotEmpty, TargetWriteFailed
from backup_engine.postgres.backup_facts import system_identifier
from backup_engine.postgres.tablespaces import LINK_DIR
from backup_engine.targetdir import checked_target, target_lock

MARKER = ".restore-drill-delta"
CONTROL = Path("global") / "pg_control"
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


@dataclass
class DeltaTarget:
    """The trees of one delta restore and what they did together."""

    pgdata: Path
    stats: DeltaStats = field(default_factory=DeltaStats)

    def tree(self, root: Path, where: str) -> DeltaTree:
        """The data directory: everything the backup does not hold goes, but the marker."""
        return DeltaTree(root, where, self.stats, keep=frozenset({MARKER}))

    def tablespace_tree(self, root: Path, where: str) -> DeltaTree:
        """A tablespace directory: only below the backup's own version directory."""
        return DeltaTree(root, where, self.stats, sweep_top=False)

    def seal(self) -> None:
        """The files are all there: the marker goes (before pg_verifybackup)."""
        with suppress(FileNotFoundError):
            os.unlink(self.pgdata / MARKER)
        _sync(self.pgdata)


@contextmanager
def delta_target(
    pgdata: Path,
    identifier: str,
    backup_id: str,
    tablespaces: Mapping[int, Path],
    major: int,
    *,
    in_use: Callable[[Path], str | None],
) -> Iterator[DeltaTarget]:
    pgdata = checked_target(pgdata, in_use)
    for directory in tablespaces.values():
        checked_target(directory, in_use)
    with target_lock(pgdata):
        if _has_entries(pgdata):
            _check_cluster(pgdata, identifier, backup_id)
        for oid, directory in tablespaces.items():
            _check_tablespace(pgdata, oid, directory, major)
        for directory in (pgdata, *tablespaces.values()):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            _unstartable(pgdata, identifier)
        except OSError as exc:
            raise TargetWriteFailed(
                f"cannot prepare {pgdata} for a delta restore: {exc.strerror or exc}",
                hint=f"it needs a writable {MARKER} and a removable {CONTROL}; nothing was "
                "restored",
            ) from None
        try:
            yield DeltaTarget(pgdata)
        except BackupEngineError as exc:
            with suppress(OSError):
                _unstartable(pgdata, identifier)
            exc.hint = (
                (f"{exc.hint}; " if exc.hint else "")
                + f"the delta restore stopped part-way: {pgdata} has no {CONTROL}, so no server "
                "starts on it; run the restore again (--delta writes only what still differs)"
            )
            raise
        except BaseException:
            with suppress(OSError):
                _unstartable(pgdata, identifier)
            raise


def _has_entries(directory: Path) -> bool:
    if not directory.exists():
        return False
    with os.scandir(directory) as entries:
        return any(True for _ in entries)


def _cluster_of(pgdata: Path) -> str | None:
    """The system identifier of the cluster in `pgdata`, from pg_control or the marker."""
    control = _head(pgdata / CONTROL, 16)
    if control is not None:
        with suppress(BackupEngineError):
            return system_identifier(control)
    marker = _head(pgdata / MARKER, 64)
    text = marker.decode(errors="replace").strip() if marker is not None else ""
    return text if text.isdigit() else None


def _head(path: Path, size: int) -> bytes | None:
    """The first `size` bytes of a regular file, never through a link, never blocking on a
    FIFO; None for anything else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        return fh.read(size) if stat.S_ISREG(os.fstat(fd).st_mode) else None


def _check_cluster(pgdata: Path, identifier: str, backup_id: str) -> None:
    found = _cluster_of(pgdata)
    if found is None:
        raise TargetNotEmpty(
            f"{pgdata} holds files but no PostgreSQL cluster (no readable {CONTROL})",
            hint="--delta rewrites a data directory of the backup's own cluster; restore into "
            "an empty directory, or drop --delta and pass --force to move the files aside",
        )
    if found != identifier:
        raise TargetNotEmpty(
            f"{pgdata} holds another cluster (system {found}), not the one backup {backup_id} "
            f"is of (system {identifier})",
            hint="--delta only rewrites the backup's own cluster; restore into an empty "
            "directory (or drop --delta and pass --force to move it aside)",
        )


def _check_tablespace(pgdata: Path, oid: int, directory: Path, major: int) -> None:
    """A non-empty tablespace directory must be the one this cluster links, holding only its
    version directory (`PG_<major>_<catalog>`): anything beside it, another major's included,
    pg_verifybackup would reject after the restore, so it is refused before."""
    if not _has_entries(directory):
        return
    link = pgdata / LINK_DIR / str(oid)
    ours = False
    with suppress(OSError):
        ours = link.is_symlink() and Path(os.readlink(link)).resolve() == directory.resolve()
    if not ours:
        raise TargetNotEmpty(
            f"tablespace directory {directory} is not empty and is not this cluster's "
            f"tablespace {oid} ({LINK_DIR}/{oid} in {pgdata} does not point to it)",
            hint="map the tablespace to an empty directory with --tablespace-map",
        )
    others = sorted(e.name for e in os.scandir(directory) if not e.name.startswith(f"PG_{major}_"))
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise TargetNotEmpty(
            f"tablespace directory {directory} holds {shown} beside PostgreSQL {major}'s "
            "version directory",
            hint="move them out of the tablespace directory (pg_verifybackup would reject them)",
        )


def _unstartable(pgdata: Path, identifier: str) -> None:
    """The marker written and pg_control removed, both made durable."""
    # O_NONBLOCK: a FIFO planted as the marker fails (ENXIO) instead of waiting for a reader
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    fd = os.open(pgdata / MARKER, flags, 0o600)
    try:
        os.write(fd, f"{identifier}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        directory = os.open(pgdata / CONTROL.parent, _DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        pass
    else:
        try:
            with suppress(FileNotFoundError):
                os.unlink(CONTROL.name, dir_fd=directory)
            os.fsync(directory)
        finally:
            os.close(directory)
    _sync(pgdata)


def _sync(directory: Path) -> None:
    with suppress(OSError):
        fd = os.open(directory, _DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
