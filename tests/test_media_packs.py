"""Packed media snapshots (format 2) against a repository someone else wrote to, prune, and
a property test: any tree, any changes, any kept subset, every kept snapshot restores exactly."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backup_engine.codecs import get_codec
from backup_engine.drill.tree import TreeEntry, tree_fingerprint
from backup_engine.errors import CorruptObject, UsageError
from backup_engine.expire import ExpireRefused, apply_expire, plan_expire
from backup_engine.locks import BackupLocked, lock_key, repository_lock
from backup_engine.media import packs
from backup_engine.media import snapshot as snapshot_module
from backup_engine.media.entries import encode_entry, iter_entries
from backup_engine.media.index import INDEX_PREFIX, decode_index, encode_index, load_index
from backup_engine.media.manifest import (
    MEDIA_SNAPSHOTS,
    OBJECTS_PREFIX,
    MediaEntry,
    MediaSnapshotManifest,
    object_key,
)
from backup_engine.media.packs import PACKS_PREFIX, PackedBlob, PackRecord, open_blob
from backup_engine.media.prune import PRUNE_LOCK, apply_prune, plan_prune, pruning
from backup_engine.media.restore import PartialRestore, restore_media, verify_media
from backup_engine.media.snapshot import take_media_snapshot
from backup_engine.retention import RetentionPolicy
from backup_engine.storage import LocalStorage, Storage
from backup_engine.storage.encrypted import EncryptedStorage

pytestmark = pytest.mark.media
ZSTD = get_codec("zstd")
LATER = datetime.now(UTC) + timedelta(days=400)  # past every grace period


def _with_blobs(record: PackRecord, blobs: Iterable[PackedBlob]) -> PackRecord:
    return PackRecord.of(record.key, record.size, record.codec, blobs)


def _repo(tmp_path: Path, name: str = "repo") -> LocalStorage:
    (tmp_path / name).mkdir()
    return LocalStorage(tmp_path / name)


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def _replace(repo: Storage, key: str, data: bytes) -> None:
    repo.delete(key)
    repo.put_bytes(key, data)


@pytest.fixture
def small_tree(tmp_path: Path) -> Path:
    return _tree(tmp_path / "up", {f"d{i % 3}/f{i}.bin": os.urandom(500 + i) for i in range(12)})


# --- forged index --------------------------------------------------------------------------


def _forged_index(pack: dict[str, object], blobs: list[tuple[bytes, int, int, int]]) -> bytes:
    """An index object as an attacker writes it: any header, any table."""
    header = {"kind": "media-index", "format_version": 1, "packs": [pack]}
    table = b"".join(struct.pack(">32sQII", *blob) for blob in blobs)
    return zstandard.ZstdCompressor().compress(json.dumps(header).encode() + b"\n" + table)


ID0, ID1 = b"\0" * 32, b"\1" * 32


@pytest.mark.parametrize(
    ("change", "blobs"),
    [
        ({"key": "../../etc/passwd"}, None),
        ({"key": "media/packs/aa/" + "b" * 64}, None),  # not under its own prefix
        ({"codec": "lz4"}, None),
        ({"size": -1}, None),
        ({"blobs": 1}, [(ID0, 0, 10**9, 10)]),  # longer than the pack
        ({"blobs": 2}, [(ID0, 5, 4, 10), (ID1, 0, 4, 10)]),  # out of order, overlapping
        ({"blobs": 1}, [(ID0, 0, 4, 5 << 20)]),  # bigger than any blob
        ({"blobs": 3}, [(ID0, 0, 4, 10)]),  # a table shorter than the header says
        ({"blobs": "all of them"}, None),
        ({"blobs": 2**40}, None),
    ],
)
def test_a_forged_index_is_set_aside_and_expire_deletes_nothing(
    tmp_path: Path,
    small_tree: Path,
    change: dict[str, object],
    blobs: list[tuple[bytes, int, int, int]] | None,
) -> None:
    repo = _repo(tmp_path)
    take_media_snapshot(repo, ZSTD, small_tree)
    (index_key,) = [o.key for o in repo.list(INDEX_PREFIX)]
    (record,) = decode_index(repo.get_bytes(index_key))
    real = [(bytes.fromhex(b.blob_id), b.offset, b.length, b.size) for b in record.blobs]
    pack = {"key": record.key, "size": record.size, "codec": record.codec, "blobs": len(real)}
    _replace(repo, index_key, _forged_index({**pack, **change}, real if blobs is None else blobs))
    assert load_index(repo).unreadable and not len(load_index(repo))
    before = sorted(o.key for o in repo.list())
    with pytest.raises(ExpireRefused, match=r"media index .* cannot be read"):
        plan_expire(repo, RetentionPolicy(), LATER)
    assert sorted(o.key for o in repo.list()) == before
    with pytest.raises(PartialRestore, match="is in no index"):
        restore_media(repo, "latest", tmp_path / "out")


def test_an_index_pointing_at_other_bytes_is_refused_by_hash(
    tmp_path: Path, small_tree: Path
) -> None:
    repo = _repo(tmp_path)
    take_media_snapshot(repo, ZSTD, small_tree)
    (index_key,) = [o.key for o in repo.list(INDEX_PREFIX)]
    index = load_index(repo)
    (record,) = index.records().values()
    swapped = [replace(b, offset=a.offset, length=a.length, size=a.size)
               for a, b in zip(record.blobs, reversed(record.blobs), strict=True)]  # fmt: skip
    swapped.sort(key=lambda b: b.offset)
    _replace(repo, index_key, encode_index([_with_blobs(record, tuple(swapped))]))
    with pytest.raises(PartialRestore, match="does not match its sha256"):
        restore_media(repo, "latest", tmp_path / "out")
    with pytest.raises(CorruptObject, match="does not match its sha256"):
        verify_media(repo, "latest")


def test_a_blob_that_decompresses_beyond_its_size_is_refused() -> None:
    bomb = zstandard.ZstdCompressor().compress(b"\0" * (64 << 20))  # 64 MiB from a few KB
    with pytest.raises(CorruptObject, match="does not match"):
        open_blob("zstd", bomb, "0" * 64, 100)  # reads at most 101 bytes of it


# --- forged entries ------------------------------------------------------------------------


def _forge_entries(repo: Storage, entries: list[MediaEntry], *, keep_hash: bool = False) -> None:
    manifest = MEDIA_SNAPSHOTS.list(repo).backups[-1]
    assert manifest.entries_object is not None
    compressor = ZSTD.compressor()
    data = compressor.compress(b"".join(encode_entry(e) for e in entries)) + compressor.flush()
    _replace(repo, manifest.entries_object.key, data)
    if keep_hash:
        return
    stored = replace(manifest.entries_object, size=len(data),
                     sha256=__import__("hashlib").sha256(data).hexdigest())  # fmt: skip
    forged = replace(manifest, entries_object=stored, entry_count=len(entries))
    _replace(repo, MEDIA_SNAPSHOTS.manifest_key(manifest.backup_id), forged.to_json().encode())


def test_entries_changed_without_the_manifest_are_refused(tmp_path: Path, small_tree: Path) -> None:
    repo = _repo(tmp_path)
    manifest = take_media_snapshot(repo, ZSTD, small_tree)
    entries = list(iter_entries(repo, manifest))
    _forge_entries(repo, entries[:-1], keep_hash=True)
    refused = "list of entries .* (does not match its recorded sha256|has [0-9]+ bytes, the manif)"
    with pytest.raises(CorruptObject, match=refused):
        restore_media(repo, "latest", tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize(
    "hostile",
    [
        MediaEntry("../escape", "dir", 0o755, 0),
        MediaEntry("big", "file", 0o644, 0, 10 << 20, "a" * 64),  # 10 MiB in one blob
        MediaEntry("x", "file", 0o644, 0, 5, "a" * 64, chunks=("a" * 64, "b" * 64)),
        MediaEntry("y", "file", 0o644, 0, 5, "a" * 64, chunks=("../../x",)),
    ],
)
def test_forged_entries_never_write_outside_or_beyond_what_is_recorded(
    tmp_path: Path, small_tree: Path, hostile: MediaEntry
) -> None:
    repo = _repo(tmp_path)
    manifest = take_media_snapshot(repo, ZSTD, small_tree)
    _forge_entries(repo, [*iter_entries(repo, manifest), hostile])
    with pytest.raises(CorruptObject, match=r"cannot be|not inside|blobs for|chunk list"):
        restore_media(repo, "latest", tmp_path / "out")
    assert not (tmp_path / "escape").exists()


def test_a_blob_smaller_than_its_entry_says_is_not_restored_short(
    tmp_path: Path, small_tree: Path
) -> None:
    repo = _repo(tmp_path)
    manifest = take_media_snapshot(repo, ZSTD, small_tree)
    entries = list(iter_entries(repo, manifest))
    victim = next(e for e in entries if e.type == "file")
    lying = [replace(e, size=e.size + 7) if e is victim else e for e in entries]
    _forge_entries(repo, lying)
    with pytest.raises(PartialRestore, match=f"{victim.path}: its blob holds"):
        restore_media(repo, "latest", tmp_path / "out")
    assert not (tmp_path / "out" / victim.path).exists()


# --- encryption, include, prune --------------------------------------------------------------


def test_packed_snapshots_round_trip_encrypted_with_ranged_reads(
    tmp_path: Path, small_tree: Path
) -> None:
    raw = _repo(tmp_path)
    repo = EncryptedStorage(raw, os.urandom(32))
    take_media_snapshot(repo, ZSTD, small_tree)
    data = b"".join(p.read_bytes() for p in sorted(small_tree.rglob("*.bin")))
    assert not any(data[i : i + 64] in p.read_bytes()
                   for p in (tmp_path / "repo").rglob("*") if p.is_file()
                   for i in (0, 700))  # fmt: skip
    restore_media(repo, "latest", tmp_path / "out", include=("d1",))
    restored = {p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*")}
    assert restored == {"d1", *(f"d1/f{i}.bin" for i in (1, 4, 7, 10))}
    for i in (1, 4, 7, 10):
        assert (tmp_path / "out" / f"d1/f{i}.bin").read_bytes() == (
            small_tree / f"d1/f{i}.bin"
        ).read_bytes()


def test_prune_deletes_only_packs_no_kept_snapshot_needs(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    tree = _tree(tmp_path / "up", {"keep.bin": os.urandom(3000), "gone.bin": os.urandom(3000)})
    first = take_media_snapshot(repo, ZSTD, tree)
    (tree / "gone.bin").unlink()
    (tree / "new.bin").write_bytes(os.urandom(3000))
    second = take_media_snapshot(repo, ZSTD, tree)
    crashed = packs.PackUploader(repo, "zstd", 1, 1)  # stored its pack, died before the index
    crashed.add("f" * 64, b"never indexed")
    (orphan,) = crashed.finish()
    repo.put_bytes(f"{PACKS_PREFIX}ab/ab{'0' * 62}", b"not a pack at all")
    plan = plan_prune(repo, [second], LATER, timedelta(days=1))
    # pack 1 holds keep.bin (still used); pack 2 new.bin; the crashed one is named by no index
    assert [(d.key, d.reason) for d in plan.deletions] == [(orphan.key, "no index names it")]
    assert any(d.reason == "not a pack this tool wrote" for d in plan.packs)
    apply_prune(repo, plan, LATER)
    restore_media(repo, second.backup_id, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["keep.bin", "new.bin"]
    # With the first snapshot gone, nothing else is deletable: its pack still holds keep.bin.
    repo.delete(MEDIA_SNAPSHOTS.manifest_key(first.backup_id))
    assert not plan_prune(repo, [second], LATER, timedelta(days=1)).deletions


def test_expire_removes_old_snapshots_and_their_packs_and_the_rest_restores(
    tmp_path: Path,
) -> None:
    repo = _repo(tmp_path)
    tree = _tree(tmp_path / "up", {"a.bin": os.urandom(5000)})
    clock = iter([datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)])
    take_media_snapshot(repo, ZSTD, tree, clock=lambda: next(clock))
    (tree / "a.bin").write_bytes(os.urandom(5000))
    clock = iter([datetime(2026, 11, 1, tzinfo=UTC)] * 2)
    take_media_snapshot(repo, ZSTD, tree, clock=lambda: next(clock))
    packs_before = [o.key for o in repo.list(PACKS_PREFIX)]
    policy = replace(RetentionPolicy(), media_days=30)
    with pruning(repo) as may_delete:
        plan = plan_expire(repo, policy, datetime(2026, 11, 20, tzinfo=UTC) + timedelta(days=400),
                           prune_packs=may_delete)  # fmt: skip
        apply_expire(repo, plan)
    assert len(MEDIA_SNAPSHOTS.list(repo).backups) == 1
    assert len([o.key for o in repo.list(PACKS_PREFIX)]) == len(packs_before) - 1
    restore_media(repo, "latest", tmp_path / "out")
    assert (tmp_path / "out" / "a.bin").read_bytes() == (tree / "a.bin").read_bytes()
    verify_media(repo, "latest")


def test_a_forged_index_cannot_make_prune_delete_used_blobs(
    tmp_path: Path, small_tree: Path
) -> None:
    repo = _repo(tmp_path)
    take_media_snapshot(repo, ZSTD, small_tree)
    (index_key,) = [o.key for o in repo.list(INDEX_PREFIX)]
    (record,) = load_index(repo).records().values()
    before = sorted(o.key for o in repo.list())
    # 1. the index lists the pack with none of its real blobs
    fake = PackedBlob("e" * 64, 0, record.blobs[0].length, record.blobs[0].size)
    _replace(repo, index_key, encode_index([_with_blobs(record, (fake,))]))
    with pytest.raises(ExpireRefused, match="which no media index names"):
        plan_expire(repo, RetentionPolicy(), LATER)
    # 2. ... and says the used blobs live in another (real) pack, which holds other content
    decoy = packs.PackUploader(repo, "zstd", 1, 1)
    decoy.add("d" * 64, os.urandom(4096))
    (other,) = decoy.finish()
    moved = tuple(replace(b, offset=i, length=1) for i, b in enumerate(record.blobs))
    forged = [_with_blobs(record, (fake,)), _with_blobs(other, moved)]
    _replace(repo, index_key, encode_index(forged))
    with pytest.raises(ExpireRefused, match="but the pack holds blob"):
        plan_expire(repo, RetentionPolicy(), LATER)
    assert sorted(o.key for o in repo.list()) == sorted([*before, other.key])


def test_prune_and_media_backups_exclude_each_other(tmp_path: Path, small_tree: Path) -> None:
    repo = _repo(tmp_path)
    take_media_snapshot(repo, ZSTD, small_tree)
    with repository_lock(repo, PRUNE_LOCK), pytest.raises(BackupLocked, match="prune"):
        take_media_snapshot(repo, ZSTD, small_tree)
    repo.put_bytes(f"{PACKS_PREFIX}ab/ab{'0' * 62}", b"orphan")
    with repository_lock(repo, "media-123456789abc"), pruning(repo) as may_delete:
        assert not may_delete  # a backup is running: its new blobs may be in that pack
        plan = plan_prune(repo, [], LATER, timedelta(days=1), may_delete=may_delete)
        assert not plan.deletions and "a media backup is running" in plan.packs[0].reason
    assert not repo.exists(lock_key(PRUNE_LOCK))


# --- property: any tree, any changes, any kept subset --------------------------------------

NAMES = st.sampled_from(["a", "b", "c", "d/e", "d/f", "g/h/i", "big"])
CHANGE = st.tuples(st.sampled_from(["add", "modify", "delete", "rename", "append"]), NAMES)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    changes=st.lists(st.lists(CHANGE, max_size=4), min_size=1, max_size=4),
    kept_mask=st.lists(st.booleans(), min_size=4, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_every_kept_snapshot_restores_byte_identical_after_expire_and_prune(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    changes: list[list[tuple[str, str]]],
    kept_mask: list[bool],
    seed: int,
) -> None:
    monkeypatch.setattr(packs, "CHUNK_SIZE", 4096)  # "big" spans several blobs and packs
    monkeypatch.setattr(snapshot_module, "CHUNK_SIZE", 4096)
    monkeypatch.setattr(packs, "PACK_TARGET", 8192)
    rng = __import__("random").Random(seed)
    work = tmp_path_factory.mktemp("prop")
    repo = _repo(work)
    tree = _tree(work / "up", {"a": rng.randbytes(100), "big": rng.randbytes(10_000)})
    taken: list[tuple[MediaSnapshotManifest, dict[str, TreeEntry]]] = []
    for round_ in changes:
        for action, name in round_:
            path = tree / name
            if action in ("add", "modify"):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(rng.randbytes(rng.choice([0, 10, 3000, 9000])))
                os.utime(path, ns=(rng.randrange(10**18),) * 2)
            elif action == "delete" and path.is_file():
                path.unlink()
            elif action == "rename" and path.is_file():
                path.rename(tree / f"renamed-{rng.randrange(1000)}")
            elif action == "append" and path.is_file():
                with path.open("ab") as fh:
                    fh.write(rng.randbytes(5000))
        taken.append((take_media_snapshot(repo, ZSTD, tree), tree_fingerprint(tree)))
    kept = [t for t, keep in zip(taken, kept_mask, strict=False) if keep] or taken[-1:]
    for manifest, _ in taken:
        if all(manifest is not k for k, _ in kept):
            for info in list(repo.list(MEDIA_SNAPSHOTS.backup_prefix(manifest.backup_id))):
                repo.delete(info.key)
    apply_prune(repo, plan_prune(repo, [m for m, _ in kept], LATER, timedelta(days=1)), LATER)
    for n, (manifest, fingerprint) in enumerate(kept):
        out = work / f"out-{n}"
        restore_media(repo, manifest.backup_id, out)
        assert tree_fingerprint(out) == fingerprint
        verify_media(repo, manifest.backup_id)
    used = {b for m, _ in kept for e in iter_entries(repo, m) for b in e.blobs()}
    stored = load_index(repo).blob_ids()
    assert used <= stored


def test_pack_records_survive_the_index_round_trip() -> None:
    blobs = (PackedBlob("2" * 64, 0, 10, 12), PackedBlob("3" * 64, 10, 20, 40))
    record = PackRecord.of(f"{PACKS_PREFIX}ab/ab{'1' * 62}", 30, "zstd", blobs)

    assert decode_index(encode_index([record])) == [record]


# --- format 1 snapshots, written by earlier versions -------------------------------------------


def _format1_snapshot(repo: Storage, tree: Path, backup_id: str) -> MediaSnapshotManifest:
    """What version 0.x wrote: one zstd object per file under media/objects/, entries inline."""
    entries = []
    for path in sorted(tree.rglob("*")):
        rel, st_ = path.relative_to(tree).as_posix(), path.lstat()
        if path.is_dir():
            entries.append(MediaEntry(rel, "dir", st_.st_mode & 0o7777, st_.st_mtime_ns))
            continue
        data = path.read_bytes()
        sha = __import__("hashlib").sha256(data).hexdigest()
        compressor = ZSTD.compressor()
        key = object_key(sha, ZSTD.suffix)
        if not repo.exists(key):
            repo.put_bytes(key, compressor.compress(data) + compressor.flush())
        entries.append(MediaEntry(rel, "file", st_.st_mode & 0o7777, st_.st_mtime_ns,
                                  len(data), sha))  # fmt: skip
    when = datetime(2026, 6, 1, tzinfo=UTC)
    manifest = MediaSnapshotManifest(
        backup_id=backup_id, start_time=when, stop_time=when, source=str(tree),
        compression="zstd", entries=tuple(entries), files=(), new_objects=len(entries),
        new_bytes=0, tool_version="0.9.0", format_version=1,
    )  # fmt: skip
    repo.put_bytes(MEDIA_SNAPSHOTS.manifest_key(backup_id), manifest.to_json().encode())
    return manifest


def test_format1_snapshots_stay_readable_beside_packed_ones(
    tmp_path: Path, small_tree: Path
) -> None:
    repo = _repo(tmp_path)
    before = tree_fingerprint(small_tree)
    old = _format1_snapshot(repo, small_tree, "20260601T000000Z")
    new = take_media_snapshot(repo, ZSTD, small_tree)  # blobs are packed anew, once
    assert new.packed and new.new_objects == 12 and not old.packed
    for ref in (old.backup_id, new.backup_id):
        out = tmp_path / f"out-{ref}"
        restore_media(repo, ref, out)
        assert tree_fingerprint(out) == before
        assert verify_media(repo, ref).objects == 12
    with pytest.raises(UsageError, match="format 1"):
        restore_media(repo, old.backup_id, tmp_path / "sub", include=("d1",))
    objects = [o.key for o in repo.list(OBJECTS_PREFIX)]
    plan = plan_prune(repo, [new], LATER, timedelta(days=1))
    assert not plan.deletions  # the packed snapshot uses every pack
    policy = replace(RetentionPolicy(), media_days=30)
    expired = plan_expire(repo, policy, LATER)
    gone = {i.name for i in expired.deletions}
    assert old.backup_id in gone and set(objects) <= gone  # objects only the old one needed


def test_check_names_a_missing_pack_of_the_newest_snapshot(
    tmp_path: Path, small_tree: Path
) -> None:
    from backup_engine.health import CRITICAL, OK, check_backups

    repo = _repo(tmp_path)
    take_media_snapshot(repo, ZSTD, small_tree)
    assert [f.state for f in check_backups(repo)] == [OK]
    (pack,) = [o.key for o in repo.list(PACKS_PREFIX)]
    repo.delete(pack)
    (finding,) = check_backups(repo)
    assert finding.state == CRITICAL and f"pack {pack} is missing" in finding.message


def test_media_backup_takes_the_configured_paths(tmp_path: Path, small_tree: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "repo").mkdir()
    other = _tree(tmp_path / "other", {"x.txt": b"x"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKUP_ENGINE")}

    def cli(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "backup_engine", "--repo", f"file://{tmp_path / 'repo'}",
             "media", *args],
            capture_output=True, text=True, env={**env, **extra}, cwd=tmp_path, check=False,
            timeout=120,
        )  # fmt: skip

    nothing = cli("backup")
    assert nothing.returncode == 2 and "no directory to snapshot" in nothing.stderr
    assert "Traceback" not in nothing.stderr
    both = cli("backup", BACKUP_ENGINE_MEDIA_PATHS=f"{small_tree},{other}")
    assert both.returncode == 0, both.stderr
    assert f"of {small_tree} complete: 12 files" in both.stdout
    assert f"of {other} complete: 1 files" in both.stdout
    listed = cli("list")
    assert str(small_tree) in listed.stdout and str(other) in listed.stdout


def test_a_blob_packed_twice_keeps_both_packs_in_prunes_view() -> None:
    """Two backups running at once may both pack the same new file: reads use one place, and
    prune sees the blob in both packs (else its trailer check would refuse, or worse)."""
    from backup_engine.media.index import MediaIndex

    index = MediaIndex()
    blob = PackedBlob("a" * 64, 0, 10, 20)
    first, second = (f"{PACKS_PREFIX}{c * 2}/{c * 64}" for c in "bc")
    index.add(PackRecord.of(first, 10, "zstd", (blob,)))
    index.add(PackRecord.of(second, 10, "zstd", (blob,)))
    location = index.location("a" * 64)
    assert len(index) == 1 and location is not None and location.pack == first
    records = index.records()
    assert records[first].blobs == records[second].blobs == (blob,)


def test_a_list_of_entries_longer_than_recorded_stops_at_the_count(
    tmp_path: Path, small_tree: Path
) -> None:
    """A forged list that decompresses to endless entries is cut at the recorded count."""
    repo = _repo(tmp_path)
    manifest = take_media_snapshot(repo, ZSTD, small_tree)
    entries = list(iter_entries(repo, manifest))
    extra = [MediaEntry(f"~after-all/x{i}", "dir", 0o755, 0) for i in range(1000)]  # walk order
    _forge_entries(repo, entries + extra)
    forged = MEDIA_SNAPSHOTS.list(repo).backups[-1]
    lying = replace(forged, entry_count=len(entries))
    _replace(repo, MEDIA_SNAPSHOTS.manifest_key(forged.backup_id), lying.to_json().encode())
    with pytest.raises(CorruptObject, match=f"holds more than the {len(entries)} entries"):
        list(iter_entries(repo, MEDIA_SNAPSHOTS.list(repo).backups[-1]))


def test_a_hard_link_to_a_file_that_could_not_be_restored_is_named_too(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    tree = _tree(tmp_path / "up", {"a.bin": os.urandom(300), "b.bin": os.urandom(300)})
    os.link(tree / "a.bin", tree / "z-link.bin")
    manifest = take_media_snapshot(repo, ZSTD, tree)
    damage_blob = next(e for e in iter_entries(repo, manifest) if e.path == "a.bin").blobs()[0]
    location = load_index(repo).location(damage_blob)
    assert location is not None
    data = bytearray(repo.get_bytes(location.pack))
    data[location.offset + 1] ^= 0xFF
    _replace(repo, location.pack, bytes(data))
    with pytest.raises(PartialRestore, match="2 could not be restored") as failed:
        restore_media(repo, "latest", tmp_path / "out")
    assert "z-link.bin: it is a second name of a.bin" in str(failed.value.result.failed)
    assert (tmp_path / "out" / "b.bin").read_bytes() == (tree / "b.bin").read_bytes()


def test_a_mostly_unused_pack_is_rewritten_with_what_is_still_used(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    tree = _tree(tmp_path / "up", {f"f{i}.bin": os.urandom(2000) for i in range(10)})
    take_media_snapshot(repo, ZSTD, tree)
    for i in range(1, 10):
        (tree / f"f{i}.bin").unlink()
    second = take_media_snapshot(repo, ZSTD, tree)
    (old_pack,) = [o.key for o in repo.list(PACKS_PREFIX)]
    plan = plan_prune(repo, [second], LATER, timedelta(days=1))
    (decision,) = plan.deletions
    assert decision.key == old_pack and decision.reason == "rewritten: 1 of its 10 blobs are used"
    apply_prune(repo, plan, LATER)
    (new_pack,) = [o.key for o in repo.list(PACKS_PREFIX)]
    assert new_pack != old_pack and repo.stat(new_pack).size < 3000
    restore_media(repo, second.backup_id, tmp_path / "out")
    assert (tmp_path / "out" / "f0.bin").read_bytes() == (tree / "f0.bin").read_bytes()
    verify_media(repo, second.backup_id)
    assert not plan_prune(repo, [second], LATER, timedelta(days=1)).deletions  # settled


@pytest.mark.parametrize(
    "record",
    [b"[1, 2]", b'{"since": "yesterday"}', b'{"since": "2026-01-01T00:00:00", "pid": "x"}',
     b'{"since": "2999-01-01T00:00:00+00:00", "host": "HOST", "pid": 99999999999999999999}',
     b"\xff\xfe"],
)  # fmt: skip
def test_a_forged_lock_is_held_not_a_crash(tmp_path: Path, small_tree: Path, record: bytes) -> None:
    import socket

    repo = _repo(tmp_path)
    repo.put_bytes(lock_key(PRUNE_LOCK), record.replace(b"HOST", socket.gethostname().encode()))
    with pytest.raises(BackupLocked, match="prune"):
        take_media_snapshot(repo, ZSTD, small_tree)
    with pytest.raises(BackupLocked, match="another media-prune"), pruning(repo):
        pass
