"""The temporary area a server backend works in: numbered data directories under one root,
and the servers started there, all disposed of together when the backend closes."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

Server = TypeVar("Server")


class ScratchArea(Generic[Server]):
    def __init__(self, prefix: str, base_dir: Path | None, *, dir_mode: int = 0o700) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=prefix, dir=base_dir))
        self._dir_mode = dir_mode
        self._servers: list[Server] = []
        self._count = 0

    def new_data_dir(self) -> Path:
        self._count += 1
        path = self.root / f"data{self._count}"
        path.mkdir(mode=self._dir_mode)
        return path

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
        shutil.rmtree(self.root, ignore_errors=True)
