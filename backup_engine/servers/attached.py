"""A server the drill did not start: attach to it by DSN, check it, never stop or delete it
(pytest-postgresql's "noprocess" mode)."""

from __future__ import annotations

import time
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

from backup_engine.errors import ServerUnreachable, UsageError
from backup_engine.servers.base import PostgresServer

WAIT_S = 120


class AttachedPostgresServer(PostgresServer):
    def __init__(self, dsn: str) -> None:
        params = conninfo_to_dict(dsn)
        self._dsn = dsn
        self.host = str(params.get("host") or "127.0.0.1")
        self.port = int(str(params.get("port") or 5432))
        self.user = str(params.get("user") or "postgres")
        self.data_dir = Path("/nonexistent")  # not ours to see

    def dsn(self, dbname: str = "postgres") -> str:
        return self._dsn

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + WAIT_S
        while not self.is_ready():
            if time.monotonic() > deadline:
                raise ServerUnreachable(f"the server at {self.host}:{self.port} never became ready")
            time.sleep(0.5)

    def is_running(self) -> bool:
        return self.is_ready()

    def log_tail(self, lines: int = 3) -> str:
        return "(the log of an attached server is not ours to read)"

    def stop(self, *, mode: str = "fast") -> None:
        raise UsageError("the drill does not stop a server it did not start")

    def start(self, *, wait: bool = True) -> None:
        raise UsageError("the drill does not start a server it did not start")

    def destroy(self) -> None:
        raise UsageError("the drill does not destroy a server it did not start")
