"""Clusters with tablespaces and backups from a standby, on real PostgreSQL servers: our own
BASE_BACKUP client stores one archive per tablespace, compressed on the server or here, and a
restore puts each back (mapped), checked, with the rows it had. Forged archives and links are
refused before anything lands outside the mapped directories."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from backup_engine.codecs import get_codec
from backup_engine.drill.seed import seed_shop
from backup_engine.errors import CorruptObject, ServerUnreachable, UsageError
from backup_engine.postgres.basebackup import BaseBackupOptions, take_base_backup
from backup_engine.postgres.connection import connect
from backup_engine.postgres.inspect import table_fingerprints, tablespace_locations
from backup_engine.postgres.manifest import PROTOCOL, BaseBackupManifest, manifest_key
from backup_engine.postgres.restore import Recovery, restore_base_backup
from backup_engine.postgres.tablespaces import TablespaceMapping
from backup_engine.postgres.verify import verify_base_backup
from backup_engine.servers import LocalPostgresBackend, PostgresServer
from backup_engine.storage import LocalStorage

pytestmark = pytest.mark.postgres
ZSTD = get_codec("zstd")
OFFLINE = Recovery("false")  # no WAL archived: recovery ends with the backup


@pytest.fixture(scope="module")
def backend() -> Iterator[LocalPostgresBackend]:
    with LocalPostgresBackend() as servers:
        yield servers


@pytest.fixture(scope="module")
def source(backend: LocalPostgresBackend) -> PostgresServer:
    """A shop, with a table in tablespace `fast` and an index in tablespace `idx`."""
    server = backend.create()
    seed_shop(server.dsn(), users=200)
    fast, idx = backend.new_data_dir(), backend.new_data_dir()
    with connect(server.dsn()) as conn:
        conn.execute(f"CREATE TABLESPACE fast LOCATION '{fast}'")
        conn.execute(f"CREATE TABLESPACE idx LOCATION '{idx}'")
        conn.execute(
            "CREATE TABLE events TABLESPACE fast AS"
            " SELECT g AS id, md5(g::text) AS body FROM generate_series(1, 20000) AS g"
        )
        conn.execute("CREATE INDEX events_body ON events (body) TABLESPACE idx")
    return server


@pytest.fixture
def repo(tmp_path: Path) -> LocalStorage:
    (tmp_path / "repo").mkdir()
    return LocalStorage(tmp_path / "repo")


def _backup(repo: LocalStorage, source: PostgresServer, compress: str) -> BaseBackupManifest:
    return take_base_backup(repo, ZSTD, BaseBackupOptions(dsn=source.dsn(), compress=compress))


@pytest.mark.parametrize("compress", ["server", "client"])
def test_a_cluster_with_tablespaces_backs_up_and_restores_mapped(
    repo: LocalStorage, source: PostgresServer, backend: LocalPostgresBackend, compress: str
) -> None:
    expected = table_fingerprints(source.dsn())
    manifest = _backup(repo, source, compress)
    assert manifest.method == PROTOCOL and manifest.compressed_on == compress
    names = {t.name: t for t in manifest.tablespaces}
    assert sorted(names) == ["fast", "idx"]
    assert names["fast"].location == tablespace_locations(source.dsn())["fast"]
    for space in manifest.tablespaces:
        stored = manifest.file(space.archive)
        assert stored.raw_size and stored.size < stored.raw_size  # compressed, size known
    target, fast, idx = backend.new_data_dir(), backend.new_data_dir(), backend.new_data_dir()
    mapping = TablespaceMapping.parse([f"fast={fast}", f"{names['idx'].oid}={idx}"])
    result = restore_base_backup(repo, "latest", target, recovery=OFFLINE, tablespaces=mapping)
    assert result.verified and result.summed_while_written  # tablespace files summed too
    assert set(result.sha256) == {f.key for f in manifest.files}
    restored = backend.start_existing(target)
    try:
        assert table_fingerprints(restored.dsn()) == expected
        assert tablespace_locations(restored.dsn()) == {"fast": str(fast), "idx": str(idx)}
        with connect(restored.dsn()) as conn:  # the index on idx is read, and answers
            conn.execute("SET enable_seqscan = off")
            row = conn.execute("SELECT id FROM events WHERE body = md5('777')").fetchone()
            assert row == (777,)
            conn.execute("DELETE FROM events WHERE id % 7 = 0")  # the copy runs on
    finally:
        restored.stop()
    (fast / "stray").write_text("not PostgreSQL's")
    with pytest.raises(UsageError, match=r"holds stray beside PostgreSQL \d+'s"):
        restore_base_backup(repo, "latest", target, recovery=OFFLINE, tablespaces=mapping,
                            delta=True)  # fmt: skip
    (fast / "stray").unlink()
    foreign = backend.new_data_dir()
    (foreign / "data").write_text("someone's")
    elsewhere = TablespaceMapping.parse([f"fast={foreign}", f"idx={idx}"])
    with pytest.raises(UsageError, match="not this cluster's tablespace"):
        restore_base_backup(repo, "latest", target, recovery=OFFLINE, tablespaces=elsewhere,
                            delta=True)  # fmt: skip
    again = restore_base_backup(repo, "latest", target, recovery=OFFLINE, tablespaces=mapping,
                                delta=True)  # fmt: skip
    assert again.delta and 0 < again.delta.written < result.restored_bytes / 2
    assert (foreign / "data").read_text() == "someone's"
    repaired = backend.start_existing(target)
    try:
        assert table_fingerprints(repaired.dsn()) == expected
    finally:
        repaired.stop()


def test_restore_never_writes_into_the_source_s_live_tablespaces(
    repo: LocalStorage, source: PostgresServer, tmp_path: Path
) -> None:
    _backup(repo, source, "server")
    target = tmp_path / "pgdata"
    with pytest.raises(UsageError, match="tablespace-map") as refused:
        restore_base_backup(repo, "latest", target, recovery=OFFLINE)
    assert "is in use: " in refused.value.message and "running PostgreSQL" in refused.value.message
    assert not target.exists()  # refused before anything was written


def test_map_all_and_the_trial_restore_of_verify(
    repo: LocalStorage, source: PostgresServer, backend: LocalPostgresBackend, tmp_path: Path
) -> None:
    manifest = _backup(repo, source, "server")
    result = verify_base_backup(repo, "latest", scratch_dir=tmp_path)
    assert result.pg_verifybackup
    assert set(result.objects_checked) == {f.key for f in manifest.files}
    under = backend.new_data_dir()
    target = backend.new_data_dir()
    restore_base_backup(repo, "latest", target, recovery=OFFLINE,
                        tablespaces=TablespaceMapping(all_under=under))  # fmt: skip
    assert sorted(p.name for p in under.iterdir()) == ["fast", "idx"]
    assert (target / "pg_tblspc").is_dir()
    links = {p.resolve() for p in (target / "pg_tblspc").iterdir()}
    assert links == {under / "fast", under / "idx"}


def _reseal(repo: LocalStorage, manifest: BaseBackupManifest, name: str, tar: bytes) -> None:
    """Someone with bucket access replaces archive `name` and reseals backup.json."""
    stored = manifest.file(name)
    body = ZSTD.compress_whole(tar)
    repo.put_bytes(stored.key, body)
    sealed = replace(stored, size=len(body), sha256=hashlib.sha256(body).hexdigest(),
                     raw_size=len(tar))  # fmt: skip
    files = tuple(sealed if f.name == name else f for f in manifest.files)
    repo.put_bytes(manifest_key(manifest.backup_id),
                   replace(manifest, files=files).to_json().encode())  # fmt: skip


def _with_member(tar: bytes, info: tarfile.TarInfo) -> bytes:
    """`tar` with one more member at its end."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(tar)) as source,
        tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as forged,
    ):
        for member in source:
            forged.addfile(member, source.extractfile(member) if member.isreg() else None)
        forged.addfile(info)
    return out.getvalue()


def _link(name: str, to: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = tarfile.SYMTYPE, to, 0o777
    return info


@pytest.mark.parametrize(
    ("archive", "member", "refusal"),
    [
        ("base", _link("pg_tblspc/99999", "/etc"), "does not list"),  # an unlisted tablespace
        ("base", _link("global/evil", "/etc/passwd"), "outside pg_tblspc"),
        ("tablespace", _link("PG_15_x/evil", "/etc"), "holds a symbolic link"),
    ],
)
def test_forged_links_are_refused_and_nothing_stays_behind(
    repo: LocalStorage,
    source: PostgresServer,
    tmp_path: Path,
    archive: str,
    member: tarfile.TarInfo,
    refusal: str,
) -> None:
    manifest = _backup(repo, source, "server")
    name = manifest.tablespaces[0].archive if archive == "tablespace" else "base.tar.zst"
    stored = manifest.file(name)
    tar = ZSTD.open_decompressed(repo.open_reader(stored.key)).read()
    _reseal(repo, manifest, name, _with_member(tar, member))
    under = tmp_path / "spaces"
    with pytest.raises(CorruptObject, match=refusal):
        restore_base_backup(repo, "latest", tmp_path / "pgdata", recovery=OFFLINE,
                            tablespaces=TablespaceMapping(all_under=under))  # fmt: skip
    assert not (tmp_path / "pgdata").exists()
    assert not any(under.iterdir())  # the tablespace directories were taken back


def test_a_forged_location_is_refused_before_any_write(
    repo: LocalStorage, source: PostgresServer, tmp_path: Path
) -> None:
    manifest = _backup(repo, source, "server")
    forged = replace(manifest.tablespaces[0], location="/etc/postgresql-evil")
    spaces = (forged, *manifest.tablespaces[1:])
    repo.put_bytes(manifest_key(manifest.backup_id),
                   replace(manifest, tablespaces=spaces).to_json().encode())  # fmt: skip
    with pytest.raises(CorruptObject, match="system directory"):
        restore_base_backup(repo, "latest", tmp_path / "pgdata", recovery=OFFLINE)
    assert not (tmp_path / "pgdata").exists()
    # an archive the manifest does not list is never read: the mapped restore works
    repo.put_bytes(f"postgres/base/{manifest.backup_id}/424242.tar.zst", b"junk")
    restore_base_backup(repo, "latest", tmp_path / "pgdata", recovery=OFFLINE,
                        tablespaces=TablespaceMapping(all_under=tmp_path / "s"))  # fmt: skip
    assert not (tmp_path / "s" / "424242").exists()


def test_a_backup_from_a_hot_standby_restores_the_primary_s_data(
    repo: LocalStorage, source: PostgresServer, backend: LocalPostgresBackend
) -> None:
    """The usual production set-up: the standby carries the backup's load."""
    standby_dir = backend.new_data_dir()
    spaces = {name: backend.new_data_dir() for name in ("fast", "idx")}
    mapping = [f"--tablespace-mapping={where}={spaces[name]}"
               for name, where in tablespace_locations(source.dsn()).items()]  # fmt: skip
    backend.run_pg("pg_basebackup", f"--dbname={source.dsn()}", f"--pgdata={standby_dir}",
                   "--write-recovery-conf", "--checkpoint=fast", *mapping)  # fmt: skip
    standby = backend.start_existing(standby_dir, settings={"hot_standby": "on"})
    try:
        with connect(source.dsn()) as conn:
            conn.execute("INSERT INTO events SELECT g, 'late' FROM generate_series(1e6, 1e6+9) g")
            lsn = str(conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])  # type: ignore[index]
        _wait_for_replay(standby, lsn)
        expected = table_fingerprints(source.dsn())
        manifest = _backup(repo, standby, "server")
        assert manifest.from_standby
        assert manifest.system_identifier == _system_identifier(source)
    finally:
        standby.stop()
    target, under = backend.new_data_dir(), backend.new_data_dir()
    restore_base_backup(repo, "latest", target, recovery=OFFLINE,
                        tablespaces=TablespaceMapping(all_under=under))  # fmt: skip
    restored = backend.start_existing(target)
    try:
        assert table_fingerprints(restored.dsn()) == expected
    finally:
        restored.stop()


def _wait_for_replay(standby: PostgresServer, lsn: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    with connect(standby.dsn()) as conn:
        while not conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()[
            0
        ]:  # type: ignore[index]
            assert time.monotonic() < deadline, f"the standby did not replay {lsn}"
            time.sleep(0.05)


def _system_identifier(server: PostgresServer) -> str:
    with connect(server.dsn()) as conn:
        row = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
    assert row is not None
    return str(row[0])


def _cli(repo: LocalStorage, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BACKUP_ENGINE"))}
    return subprocess.run(
        [sys.executable, "-m", "backup_engine", "--repo", repo.url, *args],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip


def test_the_command_line_backs_up_shows_and_restores_a_cluster_with_tablespaces(
    repo: LocalStorage, source: PostgresServer, tmp_path: Path
) -> None:
    """As an operator runs it: pg backup, pg show naming the tablespaces and the path taken,
    a restore refused in one line while the source owns the locations, then mapped."""
    done = _cli(repo, "pg", "backup", "--dsn", source.dsn(), "--no-progress")
    assert done.returncode == 0, done.stderr
    shown = _cli(repo, "pg", "show", "latest")
    assert "BASE_BACKUP (replication protocol), compressed on the server" in shown.stdout
    assert "fast (oid " in shown.stdout and "idx (oid " in shown.stdout
    refused = _cli(repo, "pg", "restore", "latest", "--pgdata", str(tmp_path / "a"))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "--tablespace-map" in refused.stderr
    bad = _cli(repo, "pg", "restore", "latest", "--pgdata", str(tmp_path / "a"),
               "--tablespace-map", "fast")  # fmt: skip
    assert bad.returncode == 2 and "NAME_OR_OID=/new/directory" in bad.stderr
    restored = _cli(repo, "pg", "restore", "latest", "--pgdata", str(tmp_path / "a"),
                    "--tablespace-map-all", str(tmp_path / "spaces"), "--no-progress")  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    assert sorted(p.name for p in (tmp_path / "spaces").iterdir()) == ["fast", "idx"]
    assert f"tablespaces: fast in {tmp_path / 'spaces' / 'fast'}, idx in" in restored.stdout


def test_a_role_without_replication_is_told_what_it_needs(
    repo: LocalStorage, source: PostgresServer
) -> None:
    with connect(source.dsn()) as conn:
        conn.execute("DROP ROLE IF EXISTS reader")
        conn.execute("CREATE ROLE reader LOGIN")
    dsn = source.dsn().replace("user=postgres", "user=reader")
    with pytest.raises(ServerUnreachable) as refused:
        take_base_backup(repo, ZSTD, BaseBackupOptions(dsn=dsn))
    assert "REPLICATION attribute" in str(refused.value.hint)
    assert not list(repo.list("postgres/"))  # nothing stored


def test_a_stuck_archiver_never_holds_a_backup_up(
    repo: LocalStorage, backend: LocalPostgresBackend
) -> None:
    """The backup carries its own WAL, so it does not wait for archive_command (which the
    server would do for ever here: BackupWaitWalArchive), as pg_basebackup -X fetch does not."""
    server = backend.create(settings={"archive_mode": "on", "archive_command": "false"})
    try:
        done = _cli(repo, "pg", "backup", "--dsn", server.dsn(), "--no-progress")  # 300 s cap
        assert done.returncode == 0, done.stderr
    finally:
        server.stop()
    restored = restore_base_backup(repo, "latest", backend.new_data_dir(), recovery=OFFLINE)
    assert restored.verified
