"""Is a running PostgreSQL server using this directory, or anything inside or above it?

A restore with --force moves a directory aside. Checking only `<target>/postmaster.pid` let
`--pgdata LIVE/base --force` take a live server apart. Here a target is refused when:
- the target or any directory above it holds the `postmaster.pid` of a live process;
- any directory below it (a few levels deep) does;
- it is inside, or contains, the data directory or a tablespace of a running server, as the
  kernel reports it (every PostgreSQL process's working directory is its data directory).
"""

from __future__ import annotations

import os
from pathlib import Path

POSTMASTER_PID = "postmaster.pid"
SEARCH_DEPTH = 3
PROCESS_NAMES = ("postgres", "postmaster")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_postmaster(pgdata: Path) -> int | None:
    """The pid of a live server using `pgdata`, from its postmaster.pid, else None."""
    try:
        first = (pgdata / POSTMASTER_PID).read_text(errors="replace").split("\n", 1)[0]
        pid = int(first.strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 and _pid_alive(pid) else None


def _process_data_dirs() -> set[Path]:
    """Data directories (and their tablespaces) of PostgreSQL processes this user may inspect."""
    found: set[Path] = set()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            name = Path(f"/proc/{entry}/comm").read_text().strip()
            if name not in PROCESS_NAMES:
                continue
            cwd = Path(os.readlink(f"/proc/{entry}/cwd"))
        except OSError:
            continue
        if (cwd / "PG_VERSION").exists():
            found.add(cwd)
    for data_dir in list(found):
        try:
            links = list((data_dir / "pg_tblspc").iterdir())
        except OSError:
            continue
        for link in links:
            try:
                found.add(link.resolve())
            except OSError:
                continue
    return found


def _below(top: Path, depth: int) -> list[Path]:
    """Directories under `top`, `depth` levels deep at most, never following links."""
    found = []
    level = [top]
    for _ in range(depth):
        following = []
        for directory in level:
            try:
                with os.scandir(directory) as entries:
                    following += [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]
            except OSError:
                continue
        found += following
        level = following
    return found


def live_server_near(target: Path) -> str | None:
    """Why `target` must not be touched because a server is running there, or None."""
    target = Path(os.path.abspath(target))
    resolved = target.resolve() if target.exists() else target
    for directory in (target, *target.parents):
        pid = running_postmaster(directory)
        if pid is not None:
            where = "on" if directory == target else "in"
            return f"a PostgreSQL server (pid {pid}) is running {where} {directory}"
    if target.is_dir():
        for directory in _below(target, SEARCH_DEPTH):
            pid = running_postmaster(directory)
            if pid is not None:
                return f"a PostgreSQL server (pid {pid}) is running on {directory}, inside {target}"
    for live in _process_data_dirs():
        if resolved == live or resolved.is_relative_to(live):
            return f"{target} is part of a running PostgreSQL server's files ({live})"
        if live.is_relative_to(resolved):
            return f"{target} contains a running PostgreSQL server's files ({live})"
    return None
