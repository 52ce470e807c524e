"""The temporary area a server backend works in: numbered data directories under one root,
and the servers started there, all disposed of together when the backend closes."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from backup_engine.servers.base import tablespaces_beside
from backup_engine.servers.reaper import SCRATCH_PREFIX, claim

Server = TypeVar("Server")


class ScratchArea(Generic[Server]):
    def __init__(self, prefix: str, base_dir: Path | None, *, dir_mode: int = 0o700) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=prefix, dir=base_dir))
        claim(self.root, prefix.removeprefix(SCRATCH_PREFIX).rstrip("-"))  # for the reaper
        self._dir_mode = dir_mode
        self._servers: list[Server] = []
        self._mounts: list[Path] = []
        self._count = 0

    def new_data_dir(self, *, disk_mb: int | None = None) -> Path:
        """A new empty directory; with `disk_mb`, a filesystem of its own of that size (a
        tmpfs, so filling it fills nothing else: drills of a full disk)."""
        self._count += 1
        path = self.root / f"data{self._count}"
        path.mkdir(mode=self._dir_mode)
        if disk_mb is not None:
            self._mount(path, disk_mb)
        return path

    def _mount(self, path: Path, disk_mb: int) -> None:
        if os.geteuid() != 0:
            raise SmallDiskUnavailable(f"a {disk_mb} MB disk of its own needs root to mount")
        options = f"size={disk_mb}m,mode={self._dir_mode:o}"
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                              capture_output=True, text=True, check=False)  # fmt: skip
        if done.returncode != 0:
            raise SmallDiskUnavailable(f"cannot mount a {disk_mb} MB tmpfs: {done.stderr.strip()}")
        self._mounts.append(path)

    def track(self, server: Server) -> Server:
        """Remember a server before it starts, so close() disposes of it even if it never
        answers."""
        self._servers.append(server)
        return server

    def close(self, dispose: Callable[[Server], None]) -> None:
        """Dispose of every server (a failure must not stop the cleanup), then the root.
        `dispose` is the backend's choice: a server may run on a directory it does not own."""
        for server in self._servers:
            with contextlib.suppress(Exception):
                dispose(server)
        self._servers.clear()
        for mount in self._mounts:
            _unmount(mount)
        self._mounts.clear()
        shutil.rmtree(self.root, ignore_errors=True)


def remove_data_dir(path: Path) -> None:
    """Delete a server's data directory (and its disk when it had one of its own), and the
    tablespaces restored beside it."""
    if os.path.ismount(path):
        _unmount(path)
    shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(tablespaces_beside(path), ignore_errors=True)


def _unmount(path: Path) -> None:
    subprocess.run(["umount", "--lazy", str(path)], capture_output=True, check=False)


class SmallDiskUnavailable(Exception):
    """This machine cannot give a server a disk of its own (not root, no tmpfs)."""
