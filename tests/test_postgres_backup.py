"""Base backup, list, verify and restore against a real PostgreSQL server and a local store."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path

import pytest

from backup_engine.codecs import get_codec
from backup_engine.drill.seed import seed_shop
from backup_engine.errors import (
    BackupNotFound,
    CorruptObject,
    ServerUnreachable,
    StorageError,
    TargetNotEmpty,
    UsageError,
    VerificationFailed,
)
from backup_engine.net import free_port
from backup_engine.postgres.basebackup import BaseBackupOptions, take_base_backup
from backup_engine.postgres.binaries import find_pg_binaries
from backup_engine.postgres.catalog import list_base_backups, resolve_backup
from backup_engine.postgres.connection import connect
from backup_engine.postgres.inspect import table_fingerprints
from backup_engine.postgres.manifest import BaseBackupManifest, manifest_key
from backup_engine.postgres.restore import Recovery, restore_base_backup, verify_data_directory
from backup_engine.postgres.verify import verify_base_backup
from backup_engine.process import run
from backup_engine.servers import LocalPostgresBackend, PostgresServer
from backup_engine.storage import LocalStorage, ObjectWriter, Storage
from backup_engine.storage.faults import FailingWrites

pytestmark = pytest.mark.postgres
ZSTD = get_codec("zstd")
# These repositories archive no WAL: recovery ends with the backup, nothing is fetched.
OFFLINE = Recovery("false")


@pytest.fixture(scope="module")
def backend() -> Iterator[LocalPostgresBackend]:
    with LocalPostgresBackend() as servers:
        yield servers


@pytest.fixture(scope="module")
def source(backend: LocalPostgresBackend) -> PostgresServer:
    server = backend.create()
    seed_shop(server.dsn(), users=300)
    return server


@pytest.fixture
def repo(tmp_path: Path) -> LocalStorage:
    (tmp_path / "repo").mkdir()
    return LocalStorage(tmp_path / "repo")


def backup(repo: Storage, source: PostgresServer) -> BaseBackupManifest:
    return take_base_backup(repo, ZSTD, BaseBackupOptions(dsn=source.dsn()))


def test_backup_records_what_postgresql_reports(
    repo: LocalStorage, source: PostgresServer, backend: LocalPostgresBackend
) -> None:
    manifest = backup(repo, source)
    controldata = run([backend.binaries.path("pg_controldata"), source.data_dir]).stdout
    sysid = re.search(r"Database system identifier:\s+(\d+)", controldata)
    assert sysid and manifest.system_identifier == sysid.group(1)
    assert manifest.timeline == 1
    assert manifest.pg_major == backend.binaries.major
    assert int(manifest.stop_lsn.replace("/", ""), 16) > int(
        manifest.start_lsn.replace("/", ""), 16
    )
    assert manifest.stop_wal_file >= manifest.start_wal_file
    assert {f.name for f in manifest.files} == {"base.tar.zst", "backup_manifest"}
    base = manifest.file("base.tar.zst")
    assert base.raw_size is not None and base.size < base.raw_size  # it was compressed
    assert [m.backup_id for m in list_base_backups(repo).backups] == [manifest.backup_id]


class RecordingStorage(LocalStorage):
    """Records the order in which objects become visible."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.committed: list[str] = []

    def writer(
        self, key: str, *, metadata: Mapping[str, str] | None = None, if_absent: bool = False
    ) -> ObjectWriter:
        inner = super().writer(key, metadata=metadata, if_absent=if_absent)
        original = inner.commit

        def commit():  # type: ignore[no-untyped-def]
            result = original()
            self.committed.append(key)
            return result

        inner.commit = commit  # type: ignore[method-assign]
        return inner


def test_manifest_is_written_last(tmp_path: Path, source: PostgresServer) -> None:
    (tmp_path / "repo").mkdir()
    repo = RecordingStorage(tmp_path / "repo")
    manifest = backup(repo, source)
    data = [key for key in repo.committed if not key.startswith("locks/")]
    assert data[-1] == manifest_key(manifest.backup_id)
    assert len(data) == 3
    assert not any(repo.list("locks/"))  # the lock is released


def test_a_backup_that_failed_before_its_manifest_is_never_restorable(
    tmp_path: Path, source: PostgresServer
) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    with pytest.raises(StorageError):
        backup(FailingWrites(LocalStorage(root), lambda key: key.endswith("backup.json")), source)
    repo = LocalStorage(root)
    catalog = list_base_backups(repo)
    assert catalog.backups == ()
    assert len(catalog.incomplete) == 1
    with pytest.raises(BackupNotFound, match="incomplete"):
        resolve_backup(repo, catalog.incomplete[0].backup_id)
    with pytest.raises(BackupNotFound, match="no complete base backup"):
        resolve_backup(repo, "latest")


def test_verify_passes_on_a_good_backup(repo: LocalStorage, source: PostgresServer) -> None:
    manifest = backup(repo, source)
    result = verify_base_backup(repo, "latest")
    assert result.backup_id == manifest.backup_id
    assert result.pg_verifybackup
    assert set(result.objects_checked) == {f.key for f in manifest.files}


def _flip_byte(repo: LocalStorage, key: str, offset_ratio: float = 0.5) -> None:
    path = repo.root / key
    data = bytearray(path.read_bytes())
    data[int(len(data) * offset_ratio)] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("hashes_only", [True, False])
def test_verify_detects_a_flipped_bit_and_names_the_object(
    repo: LocalStorage, source: PostgresServer, hashes_only: bool
) -> None:
    manifest = backup(repo, source)
    base = manifest.file("base.tar.zst")
    _flip_byte(repo, base.key)
    with pytest.raises(CorruptObject, match=re.escape(base.key)):
        verify_base_backup(repo, manifest.backup_id, hashes_only=hashes_only)


def test_verify_detects_a_damaged_postgres_manifest(
    repo: LocalStorage, source: PostgresServer
) -> None:
    manifest = backup(repo, source)
    _flip_byte(repo, manifest.file("backup_manifest").key)
    with pytest.raises(CorruptObject, match="backup_manifest"):
        verify_base_backup(repo, "latest")


def test_restore_of_a_corrupt_backup_leaves_the_target_as_it_was(
    repo: LocalStorage, source: PostgresServer, tmp_path: Path
) -> None:
    manifest = backup(repo, source)
    _flip_byte(repo, manifest.file("base.tar.zst").key, 0.9)
    target = tmp_path / "pgdata"
    with pytest.raises(CorruptObject):
        restore_base_backup(repo, "latest", target, recovery=OFFLINE)
    assert not target.exists()
    target.mkdir()
    with pytest.raises(CorruptObject):
        restore_base_backup(repo, "latest", target, recovery=OFFLINE)
    assert list(target.iterdir()) == []


def test_truncated_object_is_detected(
    repo: LocalStorage, source: PostgresServer, tmp_path: Path
) -> None:
    manifest = backup(repo, source)
    path = repo.root / manifest.file("base.tar.zst").key
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(CorruptObject, match=r"base\.tar\.zst"):
        restore_base_backup(repo, "latest", tmp_path / "pgdata", recovery=OFFLINE)


def test_restore_refuses_a_non_empty_directory_and_leaves_it_untouched(
    repo: LocalStorage, source: PostgresServer, tmp_path: Path
) -> None:
    backup(repo, source)
    target = tmp_path / "pgdata"
    target.mkdir()
    (target / "precious.txt").write_text("do not lose me")
    with pytest.raises(TargetNotEmpty, match="--force"):
        restore_base_backup(repo, "latest", target, recovery=OFFLINE)
    assert [p.name for p in target.iterdir()] == ["precious.txt"]


def test_force_moves_old_contents_aside_and_never_deletes(
    repo: LocalStorage, source: PostgresServer, tmp_path: Path
) -> None:
    backup(repo, source)
    target = tmp_path / "pgdata"
    target.mkdir()
    (target / "precious.txt").write_text("do not lose me")
    result = restore_base_backup(repo, "latest", target, recovery=OFFLINE, force=True)
    assert result.previous_contents is not None
    assert (result.previous_contents / "precious.txt").read_text() == "do not lose me"
    assert (target / "PG_VERSION").exists() and not (target / "precious.txt").exists()


def test_force_still_refuses_a_running_server(repo: LocalStorage, source: PostgresServer) -> None:
    backup(repo, source)
    before = sorted(p.name for p in source.data_dir.iterdir())
    with pytest.raises(TargetNotEmpty, match="running"):
        restore_base_backup(repo, "latest", source.data_dir, recovery=OFFLINE, force=True)
    assert sorted(p.name for p in source.data_dir.iterdir()) == before
    assert source.is_ready()


def test_restored_directory_starts_with_the_same_data(
    repo: LocalStorage, source: PostgresServer, backend: LocalPostgresBackend
) -> None:
    expected = table_fingerprints(source.dsn())
    backup(repo, source)
    target = backend.new_data_dir()
    result = restore_base_backup(repo, "latest", target, recovery=OFFLINE)
    assert result.verified and result.files > 100
    # every checksum compared while written: pg_verifybackup did not read the files back
    assert result.summed_while_written
    restored = backend.start_existing(target)
    assert table_fingerprints(restored.dsn()) == expected
    restored.stop()


def test_pg_verifybackup_catches_a_changed_data_file(
    repo: LocalStorage, source: PostgresServer, tmp_path: Path
) -> None:
    backup(repo, source)
    target = tmp_path / "pgdata"
    restore_base_backup(repo, "latest", target, recovery=OFFLINE, verify=False)
    (target / "PG_VERSION").write_text("99\n")
    pg_verifybackup = find_pg_binaries().path("pg_verifybackup")
    with pytest.raises(VerificationFailed, match="PG_VERSION"):
        verify_data_directory(pg_verifybackup, target, "test")


def test_a_file_unlike_its_manifest_checksum_fails_the_restore_even_with_a_resealed_object(
    repo: LocalStorage, source: PostgresServer, tmp_path: Path
) -> None:
    """Someone with bucket access rewrites PG_VERSION inside the stream and reseals the object's
    sha256 in backup.json: the checksums compared while writing differ from PostgreSQL's
    backup_manifest, and the full pg_verifybackup that follows refuses, naming the file."""
    manifest = backup(repo, source)
    stored = manifest.file("base.tar.zst")
    raw = ZSTD.open_decompressed(repo.open_reader(stored.key)).read()
    version = raw.index(b"PG_VERSION\x00")
    data = version + 512 - (version % 512)  # the member's data follows its 512-byte header
    forged = raw[:data] + b"9" + raw[data + 1 :]
    body = ZSTD.compress_whole(forged)
    repo.put_bytes(stored.key, body)
    resealed = replace(
        stored, size=len(body), sha256=hashlib.sha256(body).hexdigest(), raw_size=len(forged)
    )
    files = tuple(resealed if f.name == stored.name else f for f in manifest.files)
    repo.put_bytes(
        manifest_key(manifest.backup_id), replace(manifest, files=files).to_json().encode()
    )
    with pytest.raises(VerificationFailed, match="PG_VERSION"):
        restore_base_backup(repo, "latest", tmp_path / "pgdata", recovery=OFFLINE)


def test_unknown_backup_id_lists_the_newest(repo: LocalStorage, source: PostgresServer) -> None:
    manifest = backup(repo, source)
    with pytest.raises(BackupNotFound, match=manifest.backup_id):
        resolve_backup(repo, "20200101T000000Z")


def test_two_backups_in_the_same_second_get_distinct_ids(
    repo: LocalStorage, source: PostgresServer
) -> None:
    from datetime import UTC, datetime

    moment = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
    options = BaseBackupOptions(dsn=source.dsn())
    first = take_base_backup(repo, ZSTD, options, clock=lambda: moment)
    second = take_base_backup(repo, ZSTD, options, clock=lambda: moment)
    assert first.backup_id != second.backup_id
    assert len(list_base_backups(repo).backups) == 2


def test_unreachable_server_fails_before_anything_is_written(repo: LocalStorage) -> None:
    dsn = f"host=127.0.0.1 port={free_port()} user=postgres connect_timeout=3"
    with pytest.raises(ServerUnreachable, match=r"127\.0\.0\.1"):
        take_base_backup(repo, ZSTD, BaseBackupOptions(dsn=dsn))
    assert not os.path.exists(repo.root) or list(repo.list()) == []


def test_force_refuses_anything_inside_or_around_a_running_server(
    repo: LocalStorage, source: PostgresServer
) -> None:
    """`--pgdata LIVE/base --force` once moved a live server's directory aside."""
    backup(repo, source)
    live = source.data_dir
    before = sorted(p.name for p in live.iterdir())
    for target in (live / "base", live / "global", live / "pg_wal", live / "new", live.parent):
        with pytest.raises(TargetNotEmpty, match="running"):
            restore_base_backup(repo, "latest", target, recovery=OFFLINE, force=True)
    assert sorted(p.name for p in live.iterdir()) == before
    assert not (live / "new").exists()
    assert source.is_ready()


def test_two_restores_into_one_directory_never_interleave(
    repo: LocalStorage, source: PostgresServer, tmp_path: Path
) -> None:
    backup(repo, source)
    target = tmp_path / "pgdata"
    lock = tmp_path / ".pgdata.restore-lock"
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a restore in another process holds it
        with pytest.raises(TargetNotEmpty, match="another restore into"):
            restore_base_backup(repo, "latest", target, recovery=OFFLINE)
    assert not target.exists()
    restore_base_backup(repo, "latest", target, recovery=OFFLINE)
    assert (target / "PG_VERSION").exists() and not lock.exists()


def test_a_sql_ascii_cluster_is_backed_up_and_restored(
    repo: LocalStorage, backend: LocalPostgresBackend
) -> None:
    """Older clusters use -E SQL_ASCII: psycopg then returned settings as bytes and `pg backup`
    crashed on int("b'150018'"). Bytes that are not UTF-8 come back unchanged."""
    data_dir = backend.new_data_dir()
    backend.run_pg("initdb", "--pgdata", str(data_dir), "--username=postgres", "--auth=trust",
                   "--encoding=SQL_ASCII", "--no-locale", "--no-sync")  # fmt: skip
    old = backend.start_existing(data_dir, settings={"wal_level": "replica"})
    with connect(old.dsn()) as conn:
        conn.execute("CREATE TABLE names (n text)")
        conn.execute("INSERT INTO names VALUES (convert_from('\\x636166e9', 'SQL_ASCII'))")
    expected = table_fingerprints(old.dsn())
    assert backup(repo, old).pg_major == 15
    target = backend.new_data_dir()
    restore_base_backup(repo, "latest", target, recovery=OFFLINE)
    restored = backend.start_existing(target)
    assert table_fingerprints(restored.dsn()) == expected
    with connect(restored.dsn()) as conn:
        assert conn.execute("SELECT octet_length(n) FROM names").fetchone() == (4,)


def test_restore_point_without_privilege_is_one_clear_line(
    repo: LocalStorage, source: PostgresServer
) -> None:
    from psycopg.conninfo import make_conninfo

    from backup_engine.postgres.restore_points import create_restore_point

    with connect(source.dsn()) as conn:
        conn.execute("DROP ROLE IF EXISTS app_reader")
        conn.execute("CREATE ROLE app_reader LOGIN")
    dsn = make_conninfo(source.dsn(), user="app_reader")
    with pytest.raises(UsageError, match=r"cannot create restore points.*GRANT EXECUTE"):
        create_restore_point(repo, dsn, "before-migration")
    assert list(repo.list("postgres/restore-points/")) == []
