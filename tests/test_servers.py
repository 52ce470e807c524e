"""Throwaway PostgreSQL servers: real processes that always stop and clean up."""

from __future__ import annotations

from pathlib import Path

import pytest

from backup_engine.errors import MissingBinary, ServerError
from backup_engine.postgres.binaries import find_pg_binaries
from backup_engine.postgres.connection import connect
from backup_engine.servers import LocalPostgresBackend

pytestmark = pytest.mark.postgres


def test_created_server_is_private_and_ready_for_backups() -> None:
    with LocalPostgresBackend() as backend:
        server = backend.create()
        assert server.is_ready()
        with connect(server.dsn()) as conn:
            rows = conn.execute(
                "SELECT name, setting FROM pg_settings"
                " WHERE name IN ('wal_level', 'listen_addresses', 'port')"
            ).fetchall()
        settings = {str(name): str(value) for name, value in rows}
        assert settings == {
            "wal_level": "replica",
            "listen_addresses": "127.0.0.1",
            "port": str(server.port),
        }


def test_destroy_removes_the_data_directory() -> None:
    with LocalPostgresBackend() as backend:
        server = backend.create()
        server.destroy()
        assert not server.data_dir.exists()
        assert not server.is_running()
        assert not server.is_ready()


def test_servers_stop_and_files_go_even_when_the_caller_fails() -> None:
    with pytest.raises(RuntimeError), LocalPostgresBackend() as backend:
        server = backend.create()
        root = backend.root
        raise RuntimeError("a step failed")
    assert not root.exists()
    assert not server.is_ready()


def test_a_server_that_cannot_start_says_why(tmp_path: Path) -> None:
    with LocalPostgresBackend() as backend:
        empty = backend.new_data_dir()
        with pytest.raises(ServerError, match="did not start"):
            backend.start_existing(empty)


def test_missing_binaries_name_the_package(tmp_path: Path) -> None:
    with pytest.raises(MissingBinary, match="apt-get install postgresql"):
        find_pg_binaries(str(tmp_path)).path("pg_basebackup")
    with pytest.raises(MissingBinary, match="initdb"):
        LocalPostgresBackend(bindir=str(tmp_path))


def test_programs_older_than_the_server_are_refused_naming_the_package(tmp_path: Path) -> None:
    installed = find_pg_binaries()  # this machine's newest
    assert installed.major is not None
    assert find_pg_binaries(major=installed.major) == installed
    newer = installed.major + 2
    with pytest.raises(MissingBinary, match=f"postgresql-client-{newer}") as refused:
        find_pg_binaries(major=newer)
    assert f"holds version {installed.major}" in refused.value.message
    old = tmp_path / "old-bin"  # not Debian's layout: the version comes from --version
    old.mkdir()
    (old / "pg_basebackup").write_text("#!/bin/sh\necho 'pg_basebackup (PostgreSQL) 12.22'\n")
    (old / "pg_basebackup").chmod(0o755)
    with pytest.raises(MissingBinary, match="holds version 12"):
        find_pg_binaries(str(old), major=13)
    assert find_pg_binaries(str(old), major=12).bindir == old


def test_scratch_area_disposes_every_server_even_when_one_fails(tmp_path: Path) -> None:
    from backup_engine.servers.scratch import ScratchArea

    area: ScratchArea[str] = ScratchArea("scratch-", tmp_path)
    first, second = area.new_data_dir(), area.new_data_dir()
    assert (first.name, second.name) == ("data1", "data2")
    disposed: list[str] = []

    def dispose(server: str) -> None:
        disposed.append(server)
        if server == "a":
            raise RuntimeError("stuck")

    area.track("a")
    area.track("b")
    area.close(dispose)
    assert disposed == ["a", "b"]
    assert not area.root.exists()
