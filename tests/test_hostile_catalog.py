"""Hostile repository inputs that used to crash, hang or fill the disk: a WAL bomb, a manifest
nested 100,000 deep, a stray object under a dot-directory, a FIFO where a manifest should be;
each now one clear refusal or a warning, and the rest of the catalog still works."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import zstandard

from backup_engine.codecs import get_codec
from backup_engine.errors import CorruptObject
from backup_engine.postgres.control import FLOAT_FORMAT, segment_size_of
from backup_engine.postgres.manifest import manifest_key
from backup_engine.postgres.wal import META_SHA256, fetch_limit, wal_fetch
from backup_engine.storage import LocalStorage
from tests.test_manifest import genuine, sample_manifest

SEGMENT = "000000010000000000000003"
MiB = 1 << 20


def cli(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKUP_ENGINE", "AWS_"))}
    return subprocess.run([sys.executable, "-m", "backup_engine", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, check=False, timeout=timeout)  # fmt: skip


def fake_data_dir(path: Path, segment_size: int) -> Path:
    """A data directory whose pg_control says `segment_size`, as PostgreSQL's would."""
    control = bytearray(8192)
    control[200:208] = FLOAT_FORMAT
    struct.pack_into("<4I", control, 208, 8192, 131072, 8192, segment_size)
    (path / "global").mkdir(parents=True)
    (path / "global" / "pg_control").write_bytes(control)
    (path / "pg_wal").mkdir()
    return path


def bomb(repo: LocalStorage, name: str, size: int) -> None:
    """`size` zero bytes, stored as the archive stores WAL (a few KB compressed), with the sha256
    of what it decompresses to: only its size gives it away."""
    compressor = zstandard.ZstdCompressor(level=19).compressobj()
    digest, stored, left = hashlib.sha256(), bytearray(), size
    block = bytes(MiB)
    while left:
        chunk = block[: min(MiB, left)]
        digest.update(chunk)
        stored += compressor.compress(chunk)
        left -= len(chunk)
    stored += compressor.flush()
    repo.put_bytes(f"postgres/wal/{name}.zst", bytes(stored),
                   metadata={META_SHA256: digest.hexdigest()})  # fmt: skip


def test_a_wal_bomb_is_refused_at_the_clusters_segment_size(tmp_path: Path) -> None:
    repo = LocalStorage(tmp_path / "repo")
    bomb(repo, SEGMENT, 64 * MiB)  # recorded sha256 and all: a segment of 64 MiB, not 16
    data = fake_data_dir(tmp_path / "pgdata", 16 * MiB)
    assert segment_size_of(data) == 16 * MiB
    fetched = cli("--repo", repo.url, "pg", "wal-fetch", SEGMENT, "pg_wal/RECOVERYXLOG", cwd=data)
    assert fetched.returncode > 125, fetched.stderr  # PostgreSQL stops recovery, never promotes
    assert "more than 16777216 bytes" in fetched.stderr and fetched.stderr.count("\n") == 1
    assert list((data / "pg_wal").iterdir()) == []  # not a byte past the bound left behind

    exact = LocalStorage(tmp_path / "exact")
    bomb(exact, SEGMENT, 16 * MiB)  # a segment of the right size is served whole
    done = cli("--repo", exact.url, "pg", "wal-fetch", SEGMENT, "pg_wal/RECOVERYXLOG", cwd=data)
    assert done.returncode == 0, done.stderr
    assert (data / "pg_wal" / "RECOVERYXLOG").stat().st_size == 16 * MiB


def test_small_files_and_unknown_clusters_have_bounds_too(tmp_path: Path) -> None:
    assert fetch_limit("00000002.history", 16 * MiB) == MiB
    assert fetch_limit(SEGMENT, None) == 1 << 30  # PostgreSQL's largest segment
    repo = LocalStorage(tmp_path / "repo")
    bomb(repo, "00000002.history", 2 * MiB)
    with pytest.raises(CorruptObject, match="more than 1048576 bytes"):
        wal_fetch(repo, "00000002.history", tmp_path / "h", get_codec("zstd"))
    assert not (tmp_path / "h").exists() and list(tmp_path.glob(".h.*")) == []
    assert segment_size_of(tmp_path) is None  # no pg_control: not a guess


@pytest.mark.postgres
def test_a_real_clusters_segment_size_is_read_from_pg_control(tmp_path: Path) -> None:
    from backup_engine.postgres.binaries import find_pg_binaries

    initdb = find_pg_binaries().path("initdb")
    user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    top = Path(tempfile.mkdtemp(prefix="restore-drill-test-"))  # reachable by postgres
    try:
        top.chmod(0o755)
        data = top / "data"
        data.mkdir()
        if user:
            shutil.chown(data, "postgres")
        subprocess.run([*user, str(initdb), "-D", str(data), "--wal-segsize=2", "-A", "trust",
                        "--no-sync"], check=True, capture_output=True)  # fmt: skip
        assert segment_size_of(data) == 2 * MiB
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _repo_with_one_backup(tmp_path: Path) -> LocalStorage:
    repo = LocalStorage(tmp_path / "repo")
    manifest = genuine(sample_manifest())
    repo.put_bytes(manifest_key(manifest.backup_id), manifest.to_json().encode())
    return repo


def test_a_deeply_nested_manifest_is_unreadable_not_a_crash(tmp_path: Path) -> None:
    repo = _repo_with_one_backup(tmp_path)
    repo.put_bytes(manifest_key("20991231T000000Z"), b"[" * 100_000)
    listed = cli("--repo", repo.url, "pg", "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "UNREADABLE manifest: 20991231T000000Z" in listed.stderr
    assert "nested deeper than any record" in listed.stderr
    latest = cli("--repo", repo.url, "pg", "restore", "latest", "--pgdata",
                 str(tmp_path / "target"), cwd=tmp_path)  # fmt: skip
    assert latest.returncode == 4 and "refusing to guess" in latest.stderr  # the newest is that
    expire = cli("--repo", repo.url, "expire", "--dry-run", cwd=tmp_path)
    assert expire.returncode == 4, expire.stdout + expire.stderr
    assert not (tmp_path / "target").exists()


def test_an_object_under_a_dot_directory_is_ignored_with_a_warning(tmp_path: Path) -> None:
    repo = _repo_with_one_backup(tmp_path)
    stray = tmp_path / "repo" / "postgres" / "base" / ".x" / "backup.json"
    stray.parent.mkdir()
    shutil.copy(tmp_path / "repo" / manifest_key(sample_manifest().backup_id), stray)
    listed = cli("--repo", repo.url, "pg", "list", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert '"backup_id": "20261125T020000Z"' in listed.stdout
    odd = LocalStorage(tmp_path / "repo")
    odd.put_bytes("postgres/base/not-an-id/backup.json", b"{}")  # a name this tool never makes
    again = cli("--repo", repo.url, "pg", "list", cwd=tmp_path)
    assert again.returncode == 0 and "ignored 1 object(s) this tool never writes" in again.stderr


def test_a_fifo_where_a_manifest_should_be_is_refused_not_waited_on(tmp_path: Path) -> None:
    repo = _repo_with_one_backup(tmp_path)
    fifo = tmp_path / "repo" / manifest_key("20991231T000000Z")
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    listed = cli("--repo", repo.url, "pg", "list", cwd=tmp_path, timeout=20)
    assert listed.returncode == 0 and "named pipe (FIFO)" in listed.stderr, listed.stderr
    latest = cli("--repo", repo.url, "pg", "restore", "latest", "--pgdata",
                 str(tmp_path / "target"), cwd=tmp_path, timeout=20)  # fmt: skip
    assert latest.returncode == 4
    link = tmp_path / "repo" / "postgres" / "wal" / f"{SEGMENT}.zst"
    link.parent.mkdir(parents=True)
    link.symlink_to("/etc/passwd")  # a symbolic link where an object should be: not followed
    with pytest.raises(CorruptObject, match="symbolic link"):
        repo.get_bytes(f"postgres/wal/{SEGMENT}.zst")
    server = socket.socket(socket.AF_UNIX)
    with contextlib.chdir(link.parent):  # a socket path is limited to 108 bytes: bind it here
        server.bind("000000010000000000000004.zst")
    with pytest.raises(CorruptObject, match="socket"):
        repo.get_bytes("postgres/wal/000000010000000000000004.zst")
    server.close()
    if os.geteuid() == 0:  # a device node where an object should be (only root can make one)
        device = tmp_path / "repo" / "postgres" / "wal" / "000000010000000000000005.zst"
        os.mknod(device, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # /dev/null's numbers
        with pytest.raises(CorruptObject, match="character device"):
            repo.get_bytes("postgres/wal/000000010000000000000005.zst")


as_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="environment limit: running the tool as another user needs root"
)


def as_postgres(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKUP_ENGINE", "AWS_"))}
    return subprocess.run(["runuser", "-u", "postgres", "--", sys.executable, "-m",
                           "backup_engine", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, check=False, timeout=60)  # fmt: skip


@as_root
def test_a_repository_belongs_to_one_user(tmp_path: Path) -> None:
    top = Path(tempfile.mkdtemp(prefix="restore-drill-test-"))
    try:
        top.chmod(0o755)
        segment = top / SEGMENT
        segment.write_bytes(os.urandom(1024))
        segment.chmod(0o644)
        # root took the first backup: the repository is root's, 0700 (backups are private)
        mine = LocalStorage(top / "root-repo")
        mine.put_bytes("postgres/base/x", b"")
        pushed = as_postgres("--repo", mine.url, "pg", "wal-push", str(segment), cwd=top)
        assert pushed.returncode in (1, 2), pushed.stderr  # before: PermissionError, exit 70
        assert "belongs to root" in pushed.stderr and "this runs as postgres" in pushed.stderr
        assert "run backup-engine as root" in pushed.stderr and pushed.stderr.count("\n") == 1
        # the reverse: the server's repository, written by root
        theirs = top / "pg-repo"
        theirs.mkdir(mode=0o700)
        shutil.chown(theirs, "postgres")
        wrong = cli("--repo", f"file://{theirs}", "pg", "wal-push", str(segment), cwd=top)
        assert wrong.returncode == 2 and "belongs to postgres" in wrong.stderr
        assert "run backup-engine as postgres" in wrong.stderr
        checked = cli("--repo", f"file://{theirs}", "check", "--no-wal-probe", cwd=top)
        assert "belongs to postgres" in checked.stdout  # check says it before the first segment
        assert list(theirs.iterdir()) == []  # nothing written by the wrong user
        # a catalog that cannot be read is an error, never "no backups"
        ok = as_postgres("--repo", f"file://{theirs}", "pg", "wal-push", str(segment), cwd=top)
        assert ok.returncode == 0, ok.stderr
        (theirs / "postgres").chmod(0o000)
        listed = as_postgres("--repo", f"file://{theirs}", "pg", "list", cwd=top)
        assert listed.returncode == 1, listed.stdout + listed.stderr
        assert "permission denied" in listed.stderr and "no complete" not in listed.stdout
        assert listed.stderr.count("\n") == 1
    finally:
        shutil.rmtree(top, ignore_errors=True)
