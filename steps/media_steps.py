"""Steps about media directories (user uploads), their snapshots and restores."""

from __future__ import annotations

import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from pytest_bdd import given, parsers, then, when

from backup_engine.codecs import get_codec
from backup_engine.drill.evidence import ScenarioRecord
from backup_engine.drill.media_data import make_media_tree
from backup_engine.drill.tree import TreeEntry, tree_fingerprint
from backup_engine.media.entries import iter_entries
from backup_engine.media.manifest import MEDIA_SNAPSHOTS, MediaSnapshotManifest
from backup_engine.media.restore import MediaRestoreResult, restore_media
from backup_engine.media.snapshot import take_media_snapshot
from backup_engine.storage import Storage


@dataclass(frozen=True)
class RestoredMedia:
    result: MediaRestoreResult
    rto_seconds: float


@pytest.fixture
def media_snapshots() -> list[MediaSnapshotManifest]:
    return []


@given(
    parsers.parse(
        "a media directory with nested folders, binary files, a {mb:d} MB file and unicode names"
    ),
    target_fixture="media_dir",
)
def media_directory(tmp_path: Path, mb: int) -> Path:
    root = tmp_path / "uploads"
    make_media_tree(root, large_mb=mb)
    return root


@given("the media directory is recorded", target_fixture="recorded_media")
@when("the media directory is recorded", target_fixture="recorded_media")
def record_media(media_dir: Path) -> dict[str, TreeEntry]:
    return tree_fingerprint(media_dir)


@when("a media snapshot is taken")
def media_snapshot(
    repository: Storage, media_dir: Path, media_snapshots: list[MediaSnapshotManifest]
) -> None:
    media_snapshots.append(take_media_snapshot(repository, get_codec("zstd"), media_dir))


@when("the media directory is lost")
def lose_media(media_dir: Path) -> None:
    shutil.rmtree(media_dir)


@when(parsers.parse("{added:d} files are added and {changed:d} file is changed"))
def change_media(media_dir: Path, added: int, changed: int) -> None:
    for n in range(added):
        (media_dir / f"new-upload-{n}.bin").write_bytes(f"new content {n}".encode() * 1000)
    for path in sorted(media_dir.rglob("avatar-*.png"))[:changed]:
        path.write_bytes(path.read_bytes()[::-1] + b"edited")


@when("a file is deleted and another is corrupted locally")
def damage_media(media_dir: Path) -> None:
    (media_dir / "documents" / "2026" / "11" / "invoice-0001.pdf").unlink()
    victim = media_dir / "users" / "0001" / "avatars" / "avatar-0.png"
    victim.write_bytes(b"\x00" * victim.stat().st_size)


@when(parsers.parse("the {which} media snapshot is restored"), target_fixture="restored")
def restore_snapshot(
    repository: Storage,
    media_snapshots: list[MediaSnapshotManifest],
    tmp_path: Path,
    drill_record: ScenarioRecord,
    which: str,
) -> RestoredMedia:
    ref = {"latest": "latest", "first": media_snapshots[0].backup_id}[which]
    started = time.monotonic()
    result = restore_media(repository, ref, tmp_path / "restored")
    drill_record.phase("fetch, check and write every file", time.monotonic() - started)
    drill_record.used_backup(result.backup_id, {})
    return RestoredMedia(result, time.monotonic() - started)


@then("every file is byte-identical, with its mode and modification time")
def identical(
    restored: RestoredMedia, recorded_media: dict[str, TreeEntry], drill_record: ScenarioRecord
) -> None:
    actual = tree_fingerprint(restored.result.destination)
    missing = sorted(set(recorded_media) - set(actual))
    extra = sorted(set(actual) - set(recorded_media))
    changed = sorted(p for p in recorded_media if p in actual and actual[p] != recorded_media[p])
    found = f"{len(missing)} missing, {len(extra)} extra, {len(changed)} changed"
    drill_record.expect(
        f"media tree ({len(recorded_media)} entries: content, mode, mtime)",
        "0 missing, 0 extra, 0 changed", found,
    )  # fmt: skip


@then(parsers.parse("the restored media holds {count:d} files, each matching its snapshot hash"))
def media_checklist(
    restored: RestoredMedia,
    repository: Storage,
    drill_record: ScenarioRecord,
    count: int,
) -> None:
    manifest = MEDIA_SNAPSHOTS.resolve(repository, restored.result.backup_id)
    files = {e.path: e.sha256 for e in iter_entries(repository, manifest) if e.type == "file"}
    actual = tree_fingerprint(restored.result.destination)
    restored_files = {p: e.sha256 for p, e in actual.items() if e.type == "file"}
    matching = sum(restored_files.get(path) == sha for path, sha in files.items())
    drill_record.expect_all([
        ("media file count", count, len(restored_files), len(restored_files) == count),
        ("media files matching their hash", len(files), matching, matching == len(files)),
    ])  # fmt: skip


@then("the second snapshot stored only the new and changed content")
def only_new(media_snapshots: list[MediaSnapshotManifest], drill_record: ScenarioRecord) -> None:
    first, second = media_snapshots[0], media_snapshots[1]
    drill_record.expect("blobs the second snapshot stored", 4, second.new_objects)
    assert second.new_bytes < first.new_bytes / 100
    assert second.file_count == first.file_count + 3


@given(parsers.parse('the media directory "{path}"'), target_fixture="media_dir")
def media_from_directory(tmp_path: Path, request: pytest.FixtureRequest, path: str) -> Path:
    """Your own files: a copy of this directory (relative to the feature file) is the media
    tree the scenario backs up, loses and restores; the original is never touched."""
    from backup_engine.drill.pytest_plugin import FEATURE_FILE

    feature = request.node.stash.get(FEATURE_FILE, None)
    source = Path(path) if Path(path).is_absolute() or not feature else Path(feature).parent / path
    if not source.is_dir():
        raise ValueError(f"no directory {source}")
    root = tmp_path / "uploads"
    shutil.copytree(source, root, symlinks=True)
    return root


@given(
    parsers.parse("a media directory of {files:d} files in {folders:d} folders"),
    target_fixture="media_dir",
)
def many_small_files(tmp_path: Path, files: int, folders: int) -> Path:
    """User uploads at scale: small random files (1-8 KB, already compressed like images)
    spread over users/0000 ... users/NNNN."""
    root = tmp_path / "uploads"
    rng = random.Random(files * 7919 + folders)
    for n in range(files):
        folder = root / "users" / f"{n % folders:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"upload-{n:06d}.jpg").write_bytes(rng.randbytes(rng.randint(1_000, 8_000)))
    return root


@when(parsers.parse('the folder "{folder}" is deleted locally'))
def delete_folder(media_dir: Path, folder: str) -> None:
    shutil.rmtree(media_dir / folder)


@when(
    parsers.parse('only the folder "{folder}" is restored from the latest media snapshot'),
    target_fixture="restored",
)
def restore_folder(
    repository: Storage, tmp_path: Path, drill_record: ScenarioRecord, folder: str
) -> RestoredMedia:
    started = time.monotonic()
    result = restore_media(repository, "latest", tmp_path / "restored", include=(folder,))
    drill_record.phase(f"fetch, check and write {folder}", time.monotonic() - started)
    drill_record.used_backup(result.backup_id, {})
    return RestoredMedia(result, time.monotonic() - started)


@then(
    parsers.parse('the restored folder "{folder}" is byte-identical and nothing else was restored')
)
def folder_identical(
    restored: RestoredMedia,
    recorded_media: dict[str, TreeEntry],
    drill_record: ScenarioRecord,
    folder: str,
) -> None:
    actual = tree_fingerprint(restored.result.destination)
    parents = {"/".join(folder.split("/")[:i]) for i in range(1, folder.count("/") + 1)}
    wanted = {p: e for p, e in recorded_media.items() if p == folder or p.startswith(folder + "/")}
    files = sum(1 for e in wanted.values() if e.type == "file")
    same = {p: e for p, e in actual.items() if p not in parents} == wanted
    drill_record.expect(
        f"folder {folder} ({files} files: content, mode, mtime)",
        "identical, nothing else", "identical, nothing else" if same else "DIFFERENT",
    )  # fmt: skip
    assert files > 0, f"the recording holds no files under {folder}"
    assert same, f"restored {sorted(set(actual) - parents)[:5]}..., expected {folder} alone"


@then(parsers.parse("the latest media snapshot is stored in at most {count:d} objects"))
def packed_objects(repository: Storage, drill_record: ScenarioRecord, count: int) -> None:
    stored = sum(1 for _ in repository.list("media/"))
    drill_record.expect("objects in the repository for media", f"<= {count}", stored,
                        stored <= count)  # fmt: skip
