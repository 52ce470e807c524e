"""wal-push / wal-fetch against both stores, and the exit codes PostgreSQL depends on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from backup_engine.codecs import get_codec
from backup_engine.drill.embedded_s3 import EmbeddedS3
from backup_engine.errors import CorruptObject, UsageError
from backup_engine.postgres.wal import (
    META_SHA256,
    WalConflict,
    WalNotFound,
    split_wal_key,
    wal_fetch,
    wal_key,
    wal_push,
)
from backup_engine.storage import LocalStorage, Storage

ZSTD = get_codec("zstd")
SEGMENT = "000000010000000000000003"
SEGMENT_SIZE = 1 << 20  # a small segment keeps the tests quick; the code does not care


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "repo")
    embedded: EmbeddedS3 = request.getfixturevalue("embedded_s3")
    return embedded.storage(f"wal-{os.urandom(4).hex()}")


def wal_file(directory: Path, name: str = SEGMENT, data: bytes | None = None) -> Path:
    path = directory / name
    path.write_bytes(
        os.urandom(SEGMENT_SIZE // 2) + bytes(SEGMENT_SIZE // 2) if data is None else data
    )
    return path


def test_push_then_fetch_gives_back_the_same_bytes(storage: Storage, tmp_path: Path) -> None:
    source = wal_file(tmp_path)
    pushed = wal_push(storage, source, ZSTD)
    assert not pushed.already_archived
    assert pushed.stored_size < pushed.raw_size  # the zero half compresses
    info = storage.stat(wal_key(SEGMENT, ZSTD))
    assert len(info.metadata[META_SHA256]) == 64
    destination = tmp_path / "pg_wal" / "RECOVERYXLOG"
    destination.parent.mkdir()
    fetched = wal_fetch(storage, SEGMENT, destination, ZSTD)
    assert destination.read_bytes() == source.read_bytes()
    assert fetched.raw_size == SEGMENT_SIZE and not fetched.partial


def test_pushing_the_same_segment_again_succeeds(storage: Storage, tmp_path: Path) -> None:
    source = wal_file(tmp_path)
    wal_push(storage, source, ZSTD)
    again = wal_push(storage, source, ZSTD)
    assert again.already_archived


def test_pushing_different_content_under_an_archived_name_is_refused(
    storage: Storage, tmp_path: Path
) -> None:
    wal_push(storage, wal_file(tmp_path), ZSTD)
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(WalConflict, match="different content"):
        wal_push(storage, wal_file(other), ZSTD)
    assert len(list(storage.list())) == 1


def test_an_uncompressed_archive_is_recognised_by_a_zstd_pusher(
    storage: Storage, tmp_path: Path
) -> None:
    source = wal_file(tmp_path)
    wal_push(storage, source, get_codec("none"))
    assert wal_push(storage, source, ZSTD).already_archived
    destination = tmp_path / "out"
    wal_fetch(storage, SEGMENT, destination, ZSTD)
    assert destination.read_bytes() == source.read_bytes()


def test_history_and_backup_files_are_archived_too(storage: Storage, tmp_path: Path) -> None:
    for name in ("00000002.history", "000000010000000000000002.00000028.backup"):
        wal_push(storage, wal_file(tmp_path, name, b"1\t0/3000000\tno recovery target\n"), ZSTD)
        assert split_wal_key(wal_key(name, ZSTD)) == (name, "zstd")
        wal_fetch(storage, name, tmp_path / "fetched", ZSTD)


def test_a_missing_segment_is_not_found(storage: Storage, tmp_path: Path) -> None:
    destination = tmp_path / "RECOVERYXLOG"
    with pytest.raises(WalNotFound):
        wal_fetch(storage, SEGMENT, destination, ZSTD)
    assert not destination.exists()


def test_a_partial_segment_stands_in_for_a_missing_one(storage: Storage, tmp_path: Path) -> None:
    source = wal_file(tmp_path, f"{SEGMENT}.partial")
    wal_push(storage, source, ZSTD)
    destination = tmp_path / "RECOVERYXLOG"
    fetched = wal_fetch(storage, SEGMENT, destination, ZSTD)
    assert fetched.partial and destination.read_bytes() == source.read_bytes()


def test_a_damaged_archive_object_never_reaches_pg_wal(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "repo")
    wal_push(storage, wal_file(tmp_path), ZSTD)
    stored = storage.root / wal_key(SEGMENT, ZSTD)
    data = bytearray(stored.read_bytes())
    data[len(data) // 3] ^= 0x04
    stored.write_bytes(bytes(data))
    destination = tmp_path / "RECOVERYXLOG"
    with pytest.raises(CorruptObject, match=SEGMENT):
        wal_fetch(storage, SEGMENT, destination, ZSTD)
    assert not destination.exists()
    assert not list(tmp_path.glob(".RECOVERYXLOG*"))


@pytest.mark.parametrize("name", ["pg_wal", "00000001000000000000000", "backup_label"])
def test_only_wal_file_names_are_accepted(tmp_path: Path, name: str) -> None:
    storage = LocalStorage(tmp_path / "repo")
    with pytest.raises(UsageError, match="not a WAL file name"):
        wal_push(storage, wal_file(tmp_path, name, b"x"), ZSTD)


def test_pushing_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        wal_push(LocalStorage(tmp_path), tmp_path / SEGMENT, ZSTD)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKUP_ENGINE")}
    return subprocess.run(
        [sys.executable, "-m", "backup_engine", *args],
        capture_output=True, text=True, cwd=cwd, env=env, check=False, timeout=60,
    )  # fmt: skip


def test_exit_codes_postgresql_relies_on(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    url = f"file://{repo}"
    source = wal_file(tmp_path)
    assert _cli("--repo", url, "pg", "wal-push", str(source), cwd=tmp_path).returncode == 0
    assert _cli("--repo", url, "pg", "wal-push", str(source), cwd=tmp_path).returncode == 0
    other = tmp_path / "other"
    other.mkdir()
    conflict = _cli("--repo", url, "pg", "wal-push", str(wal_file(other)), cwd=tmp_path)
    assert conflict.returncode == 4 and "different content" in conflict.stderr

    fetch = ("--repo", url, "pg", "wal-fetch")
    missing = _cli(*fetch, "0000000100000000000000AA", str(tmp_path / "x"), cwd=tmp_path)
    assert missing.returncode == 5  # not in the archive: recovery ends normally
    stored = repo / wal_key(SEGMENT, ZSTD)
    stored.write_bytes(stored.read_bytes()[:100])
    damaged = _cli(*fetch, SEGMENT, str(tmp_path / "y"), cwd=tmp_path)
    assert damaged.returncode == 126  # > 125: PostgreSQL stops recovery instead of promoting
    assert damaged.stderr.count("\n") == 1 and SEGMENT in damaged.stderr


def test_a_full_disk_while_archiving_leaves_nothing_half_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """file:// wal-push on a full disk once stored the object but not its metadata; every
    retry then failed ("archived sha256 unknown") and PostgreSQL's archiver was stuck."""
    import errno

    from backup_engine.errors import StorageError
    from backup_engine.storage import local

    repo = LocalStorage(tmp_path / "repo")
    (tmp_path / "repo").mkdir()
    segment = wal_file(tmp_path)
    original = local._write_durably

    def full(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(local, "_write_durably", full)
    with pytest.raises(StorageError, match="No space left on device"):
        wal_push(repo, segment, ZSTD)
    assert list(repo.list()) == []  # nothing visible, no hidden leftovers either
    assert [p.name for p in (tmp_path / "repo").rglob("*") if p.is_file()] == []
    monkeypatch.setattr(local, "_write_durably", original)
    assert not wal_push(repo, segment, ZSTD).already_archived  # space freed: the retry works
    assert wal_fetch(repo, SEGMENT, tmp_path / "back", ZSTD).raw_size == segment.stat().st_size


def test_an_object_left_without_metadata_is_repaired_by_the_same_push(tmp_path: Path) -> None:
    """What older versions left behind on a full disk: the same content pushed again replaces
    it; different content is still a conflict; fetching it is refused (its hash is unknown)."""
    (tmp_path / "repo").mkdir()
    repo = LocalStorage(tmp_path / "repo")
    segment = wal_file(tmp_path)
    result = wal_push(repo, segment, ZSTD)
    sidecar = repo.root / "postgres/wal" / f".{SEGMENT}.zst.meta.json"
    sidecar.unlink()
    with pytest.raises(CorruptObject, match="no recorded sha256"):
        wal_fetch(repo, SEGMENT, tmp_path / "back", ZSTD)
    (tmp_path / "other").mkdir()
    other = wal_file(tmp_path / "other", data=b"x" * 1024)
    with pytest.raises(WalConflict):
        wal_push(repo, other, ZSTD)
    again = wal_push(repo, segment, ZSTD)
    assert again.key == result.key and not again.already_archived
    assert wal_fetch(repo, SEGMENT, tmp_path / "back", ZSTD).raw_size == segment.stat().st_size


def test_metadata_left_by_a_killed_commit_is_adopted(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    repo = LocalStorage(tmp_path / "repo")
    wal_push(repo, wal_file(tmp_path), ZSTD)
    sidecar = repo.root / "postgres/wal" / f".{SEGMENT}.zst.meta.json"
    sidecar.rename(sidecar.with_name(sidecar.name + ".partial-0123"))  # killed before rename
    assert "sha256" in repo.stat(f"postgres/wal/{SEGMENT}.zst").metadata
    assert sidecar.exists()


def test_repository_files_are_private(tmp_path: Path) -> None:
    """Base backups hold SCRAM hashes, RDB files session tokens: 0600 files, 0700 dirs."""
    (tmp_path / "repo").mkdir()
    repo = LocalStorage(tmp_path / "repo")
    old = os.umask(0o022)
    try:
        wal_push(repo, wal_file(tmp_path), ZSTD)
    finally:
        os.umask(old)
    for path in (tmp_path / "repo").rglob("*"):
        mode = path.stat().st_mode & 0o777
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path} is {oct(mode)}"


def test_a_large_segment_is_streamed_and_refused_if_it_changes_between_two_reads(
    storage: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backup_engine.errors import IntegrityError
    from backup_engine.postgres import wal

    monkeypatch.setattr(wal, "ONE_PASS_MAX", SEGMENT_SIZE // 2)  # this segment is "large"
    source = wal_file(tmp_path)
    pushed = wal_push(storage, source, ZSTD)
    destination = tmp_path / "fetched"
    wal_fetch(storage, SEGMENT, destination, ZSTD)
    assert destination.read_bytes() == source.read_bytes() and not pushed.already_archived
    # Another file whose content changes after it was hashed, before it is streamed.
    other = wal_file(tmp_path, "000000010000000000000004")
    hash_first = wal._sha256_of

    def hash_then_change(path: Path) -> tuple[str, int]:
        result = hash_first(path)
        path.write_bytes(os.urandom(SEGMENT_SIZE))
        return result

    monkeypatch.setattr(wal, "_sha256_of", hash_then_change)
    with pytest.raises(IntegrityError, match="changed while it was archived"):
        wal_push(storage, other, ZSTD)
    assert not storage.exists(wal_key(other.name, ZSTD))  # nothing stored under its name


@pytest.mark.parametrize("codec_name", ["zstd", "none"])
@pytest.mark.parametrize("size", [0, 1, (1 << 20) + 3])
def test_a_segment_is_hashed_and_compressed_whole_even_if_it_grows_while_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, codec_name: str, size: int
) -> None:
    """The one-pass read uses a buffer sized by fstat and reused by the thread: a file that
    turns out longer than fstat said, or a smaller one after a larger, is still read whole."""
    import hashlib
    import threading

    import zstandard

    from backup_engine.postgres import wal as wal_module

    monkeypatch.setattr(wal_module, "_buffers", threading.local())  # no buffer from before
    codec = get_codec(codec_name, threads=0)
    big, small = tmp_path / "big", tmp_path / "small"
    big.write_bytes(os.urandom(size) + b"tail" * 1000)
    small.write_bytes(b"x" * 5)
    real_fstat = os.fstat

    class Shorter:  # fstat as it was before the file grew by 4000 bytes
        def __init__(self, fd: int) -> None:
            self.st_size = real_fstat(fd).st_size - 4000

    for path, lie in ((big, True), (small, False), (big, False)):
        with monkeypatch.context() as patch:
            if lie:
                patch.setattr(wal_module.os, "fstat", Shorter)
            with path.open("rb") as fh:
                stored, sha256, raw_size = wal_module._compress_and_hash(fh, codec)
        content = path.read_bytes()
        if codec_name == "zstd":
            stored = zstandard.ZstdDecompressor().decompress(stored)
        assert (stored, sha256, raw_size) == (
            content,
            hashlib.sha256(content).hexdigest(),
            len(content),
        )
