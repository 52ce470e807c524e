"""The application's own smoke tests against a restored copy (the plan's "run smoke tests
against the restored database"): the engineer's command, run with DATABASE_URL / PG* (and
REDIS_URL) pointing at the restored server, under a timeout, its output kept as evidence."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

TAIL_LINES = 5


@dataclass(frozen=True)
class SmokeResult:
    command: str
    exit_code: int | None  # None: stopped at the timeout
    seconds: float
    output: str

    @property
    def passed(self) -> bool:
        return self.exit_code == 0

    def describe(self) -> str:
        if self.exit_code is None:
            return f"stopped after {self.seconds:.0f} s (the timeout)"
        return f"exit {self.exit_code} after {self.seconds:.1f} s"

    def tail(self) -> str:
        return " | ".join(self.output.strip().splitlines()[-TAIL_LINES:]) or "(no output)"


def target_environment(dsn: str | None = None, redis_url: str | None = None) -> dict[str, str]:
    """The variables applications read: DATABASE_URL and libpq's PG*, REDIS_URL."""
    env: dict[str, str] = {}
    if dsn:
        parts = conninfo_to_dict(dsn)
        host, port = str(parts.get("host", "127.0.0.1")), str(parts.get("port", "5432"))
        user, db = str(parts.get("user", "postgres")), str(parts.get("dbname", "postgres"))
        env.update(PGHOST=host, PGPORT=port, PGUSER=user, PGDATABASE=db,
                   DATABASE_URL=f"postgresql://{user}@{host}:{port}/{db}")  # fmt: skip
        if parts.get("password"):
            env["PGPASSWORD"] = str(parts["password"])
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def run_smoke(command: str, env: dict[str, str], *, cwd: Path, timeout: float) -> SmokeResult:
    """Run `command` with a shell in `cwd`; on the timeout its whole process group is killed."""
    started = time.monotonic()
    process = subprocess.Popen(
        ["sh", "-c", command], cwd=cwd, env={**os.environ, **env}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = process.communicate(timeout=timeout)
        code: int | None = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, _ = process.communicate()
        code = None
    text = out.decode(errors="replace")
    return SmokeResult(command, code, time.monotonic() - started, text)
