"""Restores onto a disk that fills up, or a directory the tool may not write: one line naming
the place, exit 1, nothing left behind. A real full disk: a 4 MB tmpfs (needs root to mount)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from backup_engine.codecs import get_codec
from backup_engine.drill.media_data import make_media_tree
from backup_engine.drill.seed import seed_shop
from backup_engine.errors import TargetWriteFailed
from backup_engine.media.restore import restore_media
from backup_engine.media.snapshot import take_media_snapshot
from backup_engine.postgres.basebackup import BaseBackupOptions, take_base_backup
from backup_engine.postgres.restore import Recovery, restore_base_backup
from backup_engine.servers import LocalPostgresBackend
from backup_engine.storage import LocalStorage

ZSTD = get_codec("zstd")


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a 4 MB tmpfs to fill needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.fixture
def repo(tmp_path: Path) -> LocalStorage:
    (tmp_path / "repo").mkdir()
    return LocalStorage(tmp_path / "repo")


@pytest.mark.postgres
def test_a_base_backup_restore_onto_a_full_disk_names_it_and_leaves_nothing(
    repo: LocalStorage, tiny_disk: Path
) -> None:
    with LocalPostgresBackend() as servers:
        source = servers.create()
        seed_shop(source.dsn(), users=50)
        take_base_backup(repo, ZSTD, BaseBackupOptions(dsn=source.dsn()))
    with pytest.raises(TargetWriteFailed, match="No space left on device") as failed:
        restore_base_backup(repo, "latest", tiny_disk / "pgdata", recovery=Recovery("false"))
    assert failed.value.exit_code == 1
    assert list(tiny_disk.iterdir()) == []


def test_a_media_restore_onto_a_full_disk_names_it_and_leaves_nothing(
    repo: LocalStorage, tiny_disk: Path, tmp_path: Path
) -> None:
    make_media_tree(tmp_path / "uploads", large_mb=6)
    take_media_snapshot(repo, ZSTD, tmp_path / "uploads")
    with pytest.raises(TargetWriteFailed, match="No space left on device"):
        restore_media(repo, "latest", tiny_disk / "uploads")
    assert list(tiny_disk.iterdir()) == []


def test_a_read_only_target_is_one_line_naming_it(
    repo: LocalStorage, tiny_disk: Path, tmp_path: Path
) -> None:
    make_media_tree(tmp_path / "uploads", large_mb=1)
    take_media_snapshot(repo, ZSTD, tmp_path / "uploads")
    (tiny_disk / "restores").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
    done = subprocess.run(
        [sys.executable, "-m", "backup_engine", "--repo", repo.url, "media", "restore", "latest",
         "--to", str(tiny_disk / "restores" / "uploads")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1 and "Read-only file system" in done.stderr
    assert str(tiny_disk / "restores") in done.stderr
