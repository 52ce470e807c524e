"""Packed media lists are in the walk's order, and two things lean on it without holding a
list in memory: the duplicate check of a list read back, and the second backup's cursor over
the previous snapshot's files. Names that sort differently as strings and as paths ("a-x"
before "a/b" as strings, after it as paths), a symlink to a directory, and deep trees."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backup_engine.codecs import get_codec
from backup_engine.drill.tree import tree_fingerprint
from backup_engine.media import snapshot as snapshot_module
from backup_engine.media.manifest import MediaEntry, check_entries
from backup_engine.media.restore import restore_media
from backup_engine.media.snapshot import take_media_snapshot
from backup_engine.storage import LocalStorage

TRICKY = ["a/f", "a/b/f", "a/b/c/f", "a-x/f", "a.b/f", "A/f", "é/f", "z", "a0", "b/a/f", "b/f"]


def _make(root: Path, paths: list[str]) -> None:
    for i, rel in enumerate(paths):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(100 + i))


def _walk_entries(root: Path) -> list[MediaEntry]:
    """What the walk lists, as entries (the files' content does not matter here)."""
    entries = []
    for rel, st_, _ in snapshot_module._walk(root):
        assert st_ is not None
        kind = "dir" if os.path.isdir(root / rel) and not os.path.islink(root / rel) else "symlink"
        if os.path.isfile(root / rel) and not os.path.islink(root / rel):
            entries.append(MediaEntry(rel, "file", 0o644, 0, 1, "a" * 64))
        else:
            entries.append(
                MediaEntry(rel, kind, 0o755, 0, target="x" if kind == "symlink" else None)
            )
    return entries


def test_a_second_backup_reads_only_the_file_that_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "media"
    _make(root, TRICKY)
    (root / "link-to-a").symlink_to("a")  # listed with the directories, never walked into
    repo = LocalStorage(tmp_path / "repo")
    repo.root.mkdir()
    codec = get_codec("zstd")
    take_media_snapshot(repo, codec, root)
    (root / "a-x/f").write_bytes(b"changed, and of another size")

    reads: list[Path] = []
    original = snapshot_module._Walker._read

    def counting(self: snapshot_module._Walker, path: Path) -> snapshot_module._Read:
        reads.append(path)
        return original(self, path)

    monkeypatch.setattr(snapshot_module._Walker, "_read", counting)
    take_media_snapshot(repo, codec, root)
    assert reads == [root / "a-x/f"]
    restore_media(repo, "latest", tmp_path / "out")
    assert tree_fingerprint(tmp_path / "out") == tree_fingerprint(root)


def test_the_walk_order_passes_and_a_repeated_or_reordered_path_is_refused(
    tmp_path: Path,
) -> None:
    _make(tmp_path / "t", TRICKY)
    entries = _walk_entries(tmp_path / "t")
    assert len(list(check_entries(entries, packed=True))) == len(entries)
    with pytest.raises(ValueError, match="appears twice"):
        list(check_entries([*entries[:3], entries[1], *entries[3:]], packed=True))
    with pytest.raises(ValueError, match="out of the walk's order"):
        list(check_entries([*entries, entries[1]], packed=True))  # its group came back


names = st.sampled_from(["a", "b", "a-x", "a.b", "A", "é", "0"])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    paths=st.lists(st.lists(names, min_size=1, max_size=4).map("/".join), min_size=1, max_size=12),
    where=st.data(),
)
def test_any_tree_passes_and_any_duplicate_is_refused(
    tmp_path_factory: pytest.TempPathFactory, paths: list[str], where: st.DataObject
) -> None:
    root = tmp_path_factory.mktemp("walk")
    files = sorted({p + ".f" for p in paths})  # a file name never clashes with a directory
    _make(root, files)
    entries = _walk_entries(root)
    assert len(list(check_entries(entries, packed=True))) == len(entries)
    twice = where.draw(st.sampled_from(entries))
    at = where.draw(st.integers(min_value=0, max_value=len(entries)))
    with pytest.raises(ValueError, match=r"appears twice|out of the walk.s order"):
        list(check_entries([*entries[:at], twice, *entries[at:]], packed=True))


def test_a_restore_downloads_the_list_of_entries_once(tmp_path: Path) -> None:
    root = tmp_path / "media"
    _make(root, TRICKY)
    repo = LocalStorage(tmp_path / "repo")
    repo.root.mkdir()
    take_media_snapshot(repo, get_codec("zstd"), root)
    opened: list[str] = []
    original = repo.open_reader

    def counting(key: str) -> IO[bytes]:
        opened.append(key)
        return original(key)

    repo.open_reader = counting  # type: ignore[method-assign]
    restore_media(repo, "latest", tmp_path / "out")
    assert sum(key.endswith("entries.jsonl.zst") for key in opened) == 1
    assert tree_fingerprint(tmp_path / "out") == tree_fingerprint(root)
