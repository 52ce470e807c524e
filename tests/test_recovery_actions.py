"""What the server does at the recovery target: pause (still in recovery, read-only) or shut
down; and how a target past the last commit is reported."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import pytest

from backup_engine.codecs import get_codec
from backup_engine.drill.embedded_s3 import EmbeddedS3
from backup_engine.drill.markers import Marker, marker_exists, write_marker
from backup_engine.drill.recovery import restore_into_new_server
from backup_engine.postgres.archiving import switch_and_wait_archived
from backup_engine.postgres.basebackup import BaseBackupOptions, take_base_backup
from backup_engine.postgres.connection import connect
from backup_engine.postgres.recovery import RecoveryFailed
from backup_engine.postgres.recovery_config import tool_command
from backup_engine.postgres.targets import RecoveryTarget
from backup_engine.servers import LocalPostgresBackend, PostgresServer
from backup_engine.storage import S3Storage

pytestmark = pytest.mark.postgres


@dataclass(frozen=True)
class Archived:
    backend: LocalPostgresBackend
    source: PostgresServer
    repo: S3Storage
    marker: Marker
    last_commit: datetime  # nothing was committed after this


@pytest.fixture(scope="module")
def archived(embedded_s3: EmbeddedS3) -> Iterator[Archived]:
    repo = embedded_s3.storage(f"actions-{os.urandom(4).hex()}")
    with LocalPostgresBackend() as backend:
        archive = tool_command(["pg", "wal-push", "%p"], repo_url=repo.url)
        source = backend.create(
            settings={"archive_mode": "on", "archive_command": archive}, env=repo.environment()
        )
        take_base_backup(repo, get_codec("zstd"), BaseBackupOptions(dsn=source.dsn()))
        marker = write_marker(source.dsn(), repo, "here")
        with connect(source.dsn()) as conn:
            conn.execute("CREATE TABLE later AS SELECT 1 AS x")
            row = conn.execute("SELECT clock_timestamp()").fetchone()
        assert row is not None and isinstance(row[0], datetime)
        switch_and_wait_archived(source.dsn(), repo)
        yield Archived(backend, source, repo, marker, row[0])


def test_pause_leaves_a_read_only_server_at_the_target(archived: Archived) -> None:
    target = replace(archived.marker.target("lsn"), action="pause")
    restored = restore_into_new_server(archived.repo, "auto", archived.backend, target=target)
    assert restored.recovery is not None and restored.recovery.state == "paused"
    assert marker_exists(restored.server.dsn(), "here")
    with connect(restored.server.dsn()) as conn:
        row = conn.execute("SELECT pg_is_in_recovery(), to_regclass('later')").fetchone()
    assert row == (True, None)
    restored.server.destroy()


def test_shutdown_stops_the_server_at_the_target(archived: Archived) -> None:
    target = replace(archived.marker.target("time"), action="shutdown")
    restored = restore_into_new_server(archived.repo, "auto", archived.backend, target=target)
    assert restored.recovery is not None and restored.recovery.state == "shut down"
    deadline = time.monotonic() + 10
    while restored.server.is_running() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not restored.server.is_running()


def test_a_time_past_the_last_commit_fails_with_advice(archived: Archived) -> None:
    # Inside the window by archive time, but nothing was committed after it: PostgreSQL
    # cannot know it reached the target, so it refuses to finish recovery.
    moment = archived.last_commit + timedelta(milliseconds=1)
    with pytest.raises(RecoveryFailed, match="--target latest"):
        restore_into_new_server(
            archived.repo, "auto", archived.backend, target=RecoveryTarget("time", time=moment)
        )
