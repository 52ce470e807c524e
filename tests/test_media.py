"""Media snapshots on both stores: dedup, incremental reads, damage found by name, CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from backup_engine.codecs import get_codec
from backup_engine.drill.embedded_s3 import EmbeddedS3
from backup_engine.drill.media_data import make_media_tree
from backup_engine.drill.tree import tree_fingerprint
from backup_engine.errors import CorruptObject, TargetNotEmpty, UsageError
from backup_engine.media import snapshot as snapshot_module
from backup_engine.media.entries import iter_entries
from backup_engine.media.index import load_index
from backup_engine.media.manifest import MEDIA_SNAPSHOTS, MediaEntry, MediaSnapshotManifest
from backup_engine.media.restore import PartialRestore, restore_media, verify_media
from backup_engine.media.snapshot import take_media_snapshot
from backup_engine.storage import LocalStorage, Storage

pytestmark = pytest.mark.media
ZSTD = get_codec("zstd")


@pytest.fixture(params=["local", "s3"])
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        (tmp_path / "repo").mkdir()
        return LocalStorage(tmp_path / "repo")
    embedded: EmbeddedS3 = request.getfixturevalue("embedded_s3")
    return embedded.storage(f"media-{os.urandom(4).hex()}")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    make_media_tree(tmp_path / "uploads", large_mb=3)
    return tmp_path / "uploads"


def entries_of(repo: Storage, manifest: MediaSnapshotManifest) -> dict[str, MediaEntry]:
    return {e.path: e for e in iter_entries(repo, manifest)}


def damage_blob(repo: Storage, blob_id: str) -> None:
    """As an attacker or a failing disk would: one byte of one blob, inside its pack."""
    location = load_index(repo).location(blob_id)
    assert location is not None
    data = bytearray(repo.get_bytes(location.pack))
    data[location.offset + location.length // 2] ^= 0xFF
    repo.delete(location.pack)
    repo.put_bytes(location.pack, bytes(data))


def test_round_trip_is_byte_identical(repo: Storage, tree: Path, tmp_path: Path) -> None:
    before = tree_fingerprint(tree)
    manifest = take_media_snapshot(repo, ZSTD, tree)
    # 22 distinct contents (one duplicate, one empty file); the 3 MiB file is one blob
    assert manifest.file_count == 23 and manifest.new_objects == 21
    objects = [o.key for o in repo.list("media/")]
    assert len(objects) == 4, objects  # one pack, one index, the entries, the manifest
    restore_media(repo, "latest", tmp_path / "out")
    assert tree_fingerprint(tmp_path / "out") == before
    assert verify_media(repo, "latest").objects == 21


def test_unchanged_files_are_not_read_again(
    repo: Storage, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    take_media_snapshot(repo, ZSTD, tree)
    (tree / "fresh.txt").write_text("new")
    hashed: list[Path] = []
    original = snapshot_module._Walker._read

    def counting(self: Any, path: Path) -> Any:
        hashed.append(path)
        return original(self, path)

    monkeypatch.setattr(snapshot_module._Walker, "_read", counting)
    second = take_media_snapshot(repo, ZSTD, tree)
    assert [p.name for p in hashed] == ["fresh.txt"]  # read once: hashed and packed together
    assert second.new_objects == 1


def test_a_damaged_blob_is_named_by_verify_and_restore(
    repo: Storage, tree: Path, tmp_path: Path
) -> None:
    manifest = take_media_snapshot(repo, ZSTD, tree)
    entry = entries_of(repo, manifest)["documents/2026/11/invoice-0001.pdf"]
    damage_blob(repo, entry.blobs()[0])
    with pytest.raises(CorruptObject, match=entry.blobs()[0][:16]):
        verify_media(repo, "latest")
    with pytest.raises(PartialRestore, match=r"1 could not be restored: .*invoice-0001\.pdf") as e:
        restore_media(repo, "latest", tmp_path / "out")
    assert e.value.exit_code == 4
    assert e.value.result.files == manifest.file_count - 1  # everything else came back
    assert not (tmp_path / "out" / entry.path).exists()
    assert (tmp_path / "out" / "videos-large.bin").stat().st_size == 3 * 1024 * 1024


def test_a_missing_pack_is_named_and_the_rest_restored(
    repo: Storage, tree: Path, tmp_path: Path
) -> None:
    manifest = take_media_snapshot(repo, ZSTD, tree)
    (pack,) = [o.key for o in repo.list("media/packs/")]
    repo.delete(pack)
    with pytest.raises(CorruptObject, match="is missing"):
        verify_media(repo, "latest")
    with pytest.raises(PartialRestore, match="is missing") as e:
        restore_media(repo, "latest", tmp_path / "out")
    assert e.value.result.files == 1  # the empty file; every folder and link came back too
    assert (tmp_path / "out" / "empty-folder").is_dir()
    assert os.readlink(tmp_path / "out" / "latest-notes") == "documents/2026/11/notes.txt"
    assert manifest.file_count == 23


def test_restore_refuses_a_non_empty_directory(repo: Storage, tree: Path, tmp_path: Path) -> None:
    take_media_snapshot(repo, ZSTD, tree)
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(TargetNotEmpty):
        restore_media(repo, "latest", target)
    assert [p.name for p in target.iterdir()] == ["keep.txt"]


def test_a_manifest_cannot_write_outside_the_target(tmp_path: Path, tree: Path) -> None:
    (tmp_path / "repo").mkdir()
    repo = LocalStorage(tmp_path / "repo")
    manifest = take_media_snapshot(repo, ZSTD, tree)
    evil = replace(manifest, format_version=1, entries=(MediaEntry("../escaped", "dir", 0o755, 0),))
    repo.put_bytes(MEDIA_SNAPSHOTS.manifest_key(manifest.backup_id), evil.to_json().encode())
    with pytest.raises(CorruptObject, match=r"cannot be read: .*not inside the snapshot"):
        restore_media(repo, "latest", tmp_path / "out")
    assert not (tmp_path / "escaped").exists()


def test_only_directories_can_be_snapshotted(repo: Storage, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a directory"):
        take_media_snapshot(repo, ZSTD, tmp_path / "nope")


def test_command_line(tree: Path, tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKUP_ENGINE")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "backup_engine", "--repo", f"file://{tmp_path / 'repo'}",
             "media", *args],
            capture_output=True, text=True, env=env, cwd=tmp_path, check=False, timeout=120,
        )  # fmt: skip

    taken = cli("backup", "--path", str(tree), "--json")
    assert taken.returncode == 0, taken.stderr
    assert json.loads(taken.stdout)["file_count"] == 23
    assert "new: 0 blobs" in cli("backup", "--path", str(tree)).stdout
    listed = json.loads(cli("list", "--json").stdout)["backups"]
    assert len(listed) == 2 and listed[0]["file_count"] == 23 and "entries" not in listed[0]
    assert cli("verify", "latest").returncode == 0
    restored = cli("restore", "latest", "--to", str(tmp_path / "out"))
    assert restored.returncode == 0, restored.stderr
    again = cli("restore", "latest", "--to", str(tmp_path / "out"))
    assert again.returncode == 2 and "is not empty" in again.stderr


def test_a_file_written_while_read_is_read_again_and_recorded_exactly(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file appended to during the backup once produced a snapshot whose object did not match
    its recorded sha256, and the restore restored nothing at all."""
    (tmp_path / "repo").mkdir()
    repo = LocalStorage(tmp_path / "repo")
    growing = tree / "growing.log"
    growing.write_bytes(b"first line\n")
    original = snapshot_module._Walker._read
    appended: list[int] = []

    def append_once(self: Any, path: Path) -> Any:
        result = original(self, path)
        if path == growing and not appended:  # the writer was busy during the first read
            with growing.open("ab") as fh:
                fh.write(b"second line\n")
            os.utime(growing, ns=(time.time_ns() + 10**9,) * 2)
            appended.append(1)
        return result

    monkeypatch.setattr(snapshot_module._Walker, "_read", append_once)
    # The append lands after the read: that read must not be recorded as the file's content.
    manifest = take_media_snapshot(repo, ZSTD, tree)
    entry = entries_of(repo, manifest)["growing.log"]
    restore_media(repo, "latest", tmp_path / "out")
    restored = (tmp_path / "out" / "growing.log").read_bytes()
    assert entry.size == len(restored) and hashlib.sha256(restored).hexdigest() == entry.sha256


def test_files_that_keep_changing_or_vanish_are_listed_not_recorded_wrong(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "repo").mkdir()
    repo = LocalStorage(tmp_path / "repo")
    (tree / "busy.db").write_bytes(b"x" * 1000)
    (tree / "gone.tmp").write_bytes(b"y")
    os.mkfifo(tree / "pipe")
    original = snapshot_module._Walker._read

    def hostile(self: Any, path: Path) -> Any:
        if path.name == "gone.tmp":
            path.unlink(missing_ok=True)
        if path.name == "busy.db":
            raise snapshot_module.FileChanged(f"{path} changed while it was read")
        return original(self, path)

    monkeypatch.setattr(snapshot_module._Walker, "_read", hostile)
    manifest = take_media_snapshot(repo, ZSTD, tree)
    skipped = {s.path: s.reason for s in manifest.skipped}
    assert skipped == {
        "busy.db": "changed while read (3 tries)",
        "gone.tmp": "vanished while read",
        "pipe": "fifo",
    }
    assert {"busy.db", "gone.tmp", "pipe"}.isdisjoint(entries_of(repo, manifest))
    verify_media(repo, "latest")


def test_hard_links_setid_bits_and_the_root_mode_come_back_as_asked(
    repo: Storage, tmp_path: Path
) -> None:
    root = tmp_path / "uploads"
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    (root / "a.bin").write_bytes(b"shared content")
    os.link(root / "a.bin", root / "b.bin")
    (root / "tool").write_bytes(b"#!/bin/sh\n")
    (root / "tool").chmod(0o4755)
    take_media_snapshot(repo, ZSTD, root)
    restore_media(repo, "latest", tmp_path / "out")
    out = tmp_path / "out"
    assert (out / "a.bin").stat().st_ino == (out / "b.bin").stat().st_ino
    assert out.stat().st_mode & 0o777 == 0o755  # once came back 0700
    assert (out / "tool").stat().st_mode & 0o7777 == 0o755  # setuid dropped
    restore_media(repo, "latest", tmp_path / "kept", keep_setid=True)
    assert (tmp_path / "kept" / "tool").stat().st_mode & 0o7777 == 0o4755
