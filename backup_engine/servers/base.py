"""The interface every server backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

from psycopg.conninfo import make_conninfo


def tablespaces_beside(data_dir: Path) -> Path:
    """Where a server made from a backup keeps that backup's tablespaces: beside its data
    directory, never at the source's locations (see side_cluster.py)."""
    return data_dir.parent / f"{data_dir.name}-tablespaces"


class PostgresServer(ABC):
    """One running (or stopped) PostgreSQL server listening on 127.0.0.1."""

    host: str = "127.0.0.1"
    port: int
    user: str = "postgres"
    data_dir: Path

    def dsn(self, dbname: str = "postgres") -> str:
        return make_conninfo(host=self.host, port=self.port, user=self.user, dbname=dbname)

    @abstractmethod
    def is_running(self) -> bool: ...

    @abstractmethod
    def stop(self, *, mode: str = "fast") -> None:
        """Stop the server; stopping a stopped server does nothing."""

    @abstractmethod
    def start(self, *, wait: bool = True) -> None:
        """Start the stopped server again on its data directory and port (what it finds there
        is what it runs on: a damaged page, a recovery setting)."""

    @abstractmethod
    def destroy(self) -> None:
        """Simulate losing the server: kill it and delete its data directory."""

    def is_ready(self) -> bool:
        """True when the server accepts connections, as pg_isready reports it."""
        from backup_engine.postgres.binaries import find_pg_binaries
        from backup_engine.process import run

        result = run(
            [find_pg_binaries().path("pg_isready"), "--host", self.host, "--port",
             str(self.port), "--username", self.user, "--timeout=5"],
            check=False,
        )  # fmt: skip
        return result.ok

    @abstractmethod
    def log_tail(self, lines: int = 3) -> str:
        """The last lines of the server's log, for error messages."""


class PostgresBackend(ABC):
    """Creates and owns servers; `close()` stops all of them and removes their files."""

    name: str

    @abstractmethod
    def create(
        self,
        *,
        settings: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        checksums: bool = False,
        disk_mb: int | None = None,
    ) -> PostgresServer:
        """initdb a new cluster and start it. `settings` go into its postgresql.conf; `env` is
        the server's environment (what archive_command and restore_command see); `checksums`
        turns on data page checksums (a damaged page is then reported, not read); `disk_mb`
        puts its data directory on a disk of its own of that size (SmallDiskUnavailable when
        this machine cannot)."""

    @abstractmethod
    def new_data_dir(self) -> Path:
        """An empty directory a restore can write to and a server can later start from."""

    @abstractmethod
    def start_existing(
        self,
        data_dir: Path,
        *,
        settings: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        wait: bool = True,
    ) -> PostgresServer:
        """Start a server on a restored data directory. `settings` override its config for this
        run. With `wait`, return once it accepts connections; a recovering server may not
        for a long time, or may stop at its target, so recoveries start without waiting."""

    def new_tablespace_dir(self, server: PostgresServer, name: str) -> Path:
        """An empty directory `server` can hold a tablespace in (CREATE TABLESPACE ...
        LOCATION), at the same path for the server and for us, removed with the server."""
        path = tablespaces_beside(server.data_dir) / name
        path.mkdir(parents=True)
        return path

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
