"""Property: for any interleaving of writes and any target inside the recoverable window, a
point-in-time restore equals the model of the database at that target.

Real server, real archive, real recovery: each example writes a random sequence of inserts,
updates and deletes (one transaction each, a few milliseconds apart) into a table of its own,
picks a random point between two commits, restores to it by time or by LSN, and compares the
restored table with the model replayed up to that point.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from backup_engine.codecs import get_codec
from backup_engine.drill.embedded_s3 import EmbeddedS3
from backup_engine.drill.recovery import restore_into_new_server
from backup_engine.postgres.archiving import switch_and_wait_archived
from backup_engine.postgres.basebackup import BaseBackupOptions, take_base_backup
from backup_engine.postgres.connection import connect
from backup_engine.postgres.lsn import parse_lsn
from backup_engine.postgres.recovery_config import tool_command
from backup_engine.postgres.targets import RecoveryTarget
from backup_engine.servers import LocalPostgresBackend, PostgresServer
from backup_engine.storage import S3Storage

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
GAP_S = 0.02  # between commits, so a target time between two of them is unambiguous
table_numbers = itertools.count()

Op = tuple[str, int, int]  # (kind, key, value)
operations = st.lists(
    st.tuples(
        st.sampled_from(["insert", "update", "delete"]),
        st.integers(0, 5),
        st.integers(-(2**63), 2**63 - 1),
    ),
    min_size=1,
    max_size=8,
)


@dataclass(frozen=True)
class Commit:
    state: dict[int, int]  # the model after this commit
    after: datetime  # server clock just after it
    lsn: int  # WAL insert position just after it


@dataclass(frozen=True)
class Setup:
    backend: LocalPostgresBackend
    source: PostgresServer
    repo: S3Storage


@pytest.fixture(scope="module")
def setup(embedded_s3: EmbeddedS3) -> Iterator[Setup]:
    repo = embedded_s3.storage("pitr-property")
    with LocalPostgresBackend() as backend:
        archive = tool_command(["pg", "wal-push", "%p"], repo_url=repo.url)
        source = backend.create(
            settings={"archive_mode": "on", "archive_command": archive}, env=repo.environment()
        )
        take_base_backup(repo, get_codec("zstd"), BaseBackupOptions(dsn=source.dsn()))
        yield Setup(backend, source, repo)


def apply(dsn: str, table: str, ops: list[Op]) -> list[Commit]:
    """Run each operation in its own transaction; return the model after each commit."""
    model: dict[int, int] = {}
    commits = []
    with connect(dsn) as conn:
        conn.execute(f"CREATE TABLE {table} (k int PRIMARY KEY, v bigint NOT NULL)")
        for kind, key, value in ops:
            if kind == "insert":
                conn.execute(
                    f"INSERT INTO {table} VALUES (%s, %s) ON CONFLICT (k) DO UPDATE SET v = %s",
                    (key, value, value),
                )
                model[key] = value
            elif kind == "update":
                conn.execute(f"UPDATE {table} SET v = %s WHERE k = %s", (value, key))
                if key in model:
                    model[key] = value
            else:
                conn.execute(f"DELETE FROM {table} WHERE k = %s", (key,))
                model.pop(key, None)
            row = conn.execute(
                "SELECT clock_timestamp(), pg_current_wal_insert_lsn()::text"
            ).fetchone()
            assert row is not None and isinstance(row[0], datetime)
            commits.append(Commit(dict(model), row[0], parse_lsn(str(row[1]))))
            time.sleep(GAP_S)
        # A later commit outside the model: a time target must have a commit after it to stop
        # at (PostgreSQL refuses a time past the last commit of the archive).
        conn.execute(f"CREATE TABLE {table}_end ()")
    return commits


def restored_table(server: PostgresServer, table: str) -> dict[int, int] | None:
    with connect(server.dsn()) as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()
        if exists is None or exists[0] is None:
            return None
        rows = conn.execute(f"SELECT k, v FROM {table}").fetchall()
    return {int(str(k)): int(str(v)) for k, v in rows}


@settings(
    max_examples=5,
    deadline=None,
    # Each example restores a server: a failure is reported as found, not shrunk for minutes.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations, data=st.data())
def test_restore_equals_the_model_at_any_target(
    setup: Setup, ops: list[Op], data: st.DataObject
) -> None:
    table = f"kv_{next(table_numbers)}"
    commits = apply(setup.source.dsn(), table, ops)
    switch_and_wait_archived(setup.source.dsn(), setup.repo)
    index = data.draw(st.integers(0, len(commits) - 1), label="restore to after commit")
    kind = data.draw(st.sampled_from(["time", "lsn"]), label="target kind")
    commit = commits[index]
    if kind == "time":  # halfway to the next commit: after this one, before the next
        target = RecoveryTarget("time", time=commit.after + timedelta(seconds=GAP_S / 2))
    else:
        target = RecoveryTarget("lsn", lsn=commit.lsn)
    restored = restore_into_new_server(setup.repo, "auto", setup.backend, target=target)
    try:
        assert restored_table(restored.server, table) == commit.state
    finally:
        restored.server.destroy()
