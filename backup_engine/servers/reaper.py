"""Nothing outlives a drill: each scratch area records its owner (pid and start time), and the
servers started in it leave their pid where the reaper finds it (postmaster.pid, redis.pid) or
carry its label (containers). A drill that was killed (a CI job's timeout sends SIGKILL) cannot
clean up after itself; the next drill, or `backup-engine drill cleanup`, stops what it left and
removes its scratch area, the way testcontainers' reaper does for containers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

OWNER_FILE = "owner.json"
SCRATCH_PREFIX = "restore-drill-"
CONTAINER_LABEL = "restore-drill.scratch"  # on each container: the scratch area it belongs to
PID_FILE = "redis.pid"  # beside a Redis server's data: "pid start-ticks"
SERVER_PID_FILE = "server.pid"  # any other server's (the embedded S3)
PID_FILES = (PID_FILE, SERVER_PID_FILE)
STOP_WAIT_S = 10.0


def start_ticks(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot, /proc/PID/stat field 22): with the
    pid, an identity a recycled pid cannot fake. None when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the name may hold spaces and parentheses
    if fields[0] == "Z":
        return None  # killed, not yet waited for by its parent: dead all the same
    return int(fields[19])


def alive(pid: int, ticks: int | None) -> bool:
    now = start_ticks(pid)
    if now is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return ticks is None  # no /proc here: the pid alone says it lives
    return ticks is None or now == ticks


def claim(root: Path, kind: str) -> None:
    """Record this process as the owner of the scratch area `root`."""
    owner = {"pid": os.getpid(), "start_ticks": start_ticks(os.getpid()), "kind": kind,
             "created": time.time()}  # fmt: skip
    (root / OWNER_FILE).write_text(json.dumps(owner))


def record_pid(path: Path, pid: int) -> None:
    path.write_text(f"{pid} {start_ticks(pid) or ''}\n")


@dataclass(frozen=True)
class Reaped:
    root: Path
    owner_pid: int
    stopped: int  # server processes stopped
    containers: int

    def describe(self) -> str:
        return (f"removed {self.root} left by drill process {self.owner_pid} (gone): stopped "
                f"{self.stopped} server(s), {self.containers} container(s)")  # fmt: skip


def orphans(base: Path | None = None) -> list[tuple[Path, int]]:
    """Scratch areas under `base` (the temp directory) whose owner is gone, with its pid."""
    found = []
    for root in sorted((base or Path(tempfile.gettempdir())).glob(f"{SCRATCH_PREFIX}*")):
        try:
            record = root / OWNER_FILE
            # Only areas this user made: anyone may create /tmp/restore-drill-x, and a planted
            # one must never make a drill signal another's processes or delete their files.
            if root.is_symlink() or not _mine(record):
                continue
            owner = json.loads(record.read_text())
            pid, ticks = int(owner["pid"]), owner.get("start_ticks")
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            continue  # not ours to judge: no owner recorded (or not readable)
        if not alive(pid, ticks):
            found.append((root, pid))
    return found


def reap(base: Path | None = None) -> list[Reaped]:
    """Stop and remove what dead drills left behind; what was done, one entry per area."""
    done = []
    for root, pid in orphans(base):
        # areas made inside it (a fleet drill's scratch holds the drill's own), whose owners
        # died with it: their servers first
        done += reap(root)
        stopped = sum(_stop_servers(data) for data in sorted(root.iterdir()) if data.is_dir())
        containers = _remove_containers(root)
        for data in root.iterdir():
            if os.path.ismount(data):
                subprocess.run(["umount", "--lazy", str(data)], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)
        done.append(Reaped(root, pid, stopped, containers))
    return done


def _mine(path: Path) -> bool:
    """A regular file this user wrote (not a link, not another user's)."""
    found = path.lstat()
    return stat.S_ISREG(found.st_mode) and found.st_uid == os.geteuid()


def _stop_servers(data: Path) -> int:
    """Stop the server whose pid file is in `data`, if it still runs there; 1 if one was."""
    postmaster = data / "postmaster.pid"
    with contextlib.suppress(OSError, ValueError, IndexError):
        lines = postmaster.read_text().splitlines()
        pid = int(lines[0])
        # The pid is the postmaster running in this very directory (its working directory is
        # its data directory): not a recycled pid, nor one a forged postmaster.pid names.
        running_in = Path(os.readlink(f"/proc/{pid}/cwd")).resolve()
        if Path(lines[1]).resolve() == data.resolve() == running_in:
            return _terminate(pid, signal.SIGQUIT)  # PostgreSQL's immediate shutdown
    for name in PID_FILES:
        with contextlib.suppress(OSError, ValueError, IndexError):
            if not _mine(data / name):  # written by the drill that started the server
                continue
            fields = (data / name).read_text().split()
            pid, ticks = int(fields[0]), int(fields[1]) if len(fields) > 1 else None
            if alive(pid, ticks) and start_ticks(pid) is not None:
                return _terminate(pid, signal.SIGTERM)
    return 0


def _terminate(pid: int, sig: signal.Signals) -> int:
    """1 if the server was stopped; 0 if it was gone already or is not ours to signal."""
    try:
        os.kill(pid, sig)
        deadline = time.monotonic() + STOP_WAIT_S
        while start_ticks(pid) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if start_ticks(pid) is not None:
            os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return 0
    return 1


def _remove_containers(root: Path) -> int:
    if shutil.which("docker") is None:
        return 0
    listed = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={CONTAINER_LABEL}={root}"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    ids = listed.stdout.split() if listed.returncode == 0 else []
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False, timeout=120)
    return len(ids)
