"""The list of entries of a packed media snapshot, read as untrusted bytes: lines parsed in
batches must refuse what per-line parsing refused, and the second read of a restore (which skips
the checks) must only ever follow a first read that checked every entry."""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import replace
from pathlib import Path

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backup_engine.codecs import get_codec
from backup_engine.errors import CorruptObject
from backup_engine.media import entries as entries_module
from backup_engine.media import manifest as manifest_module
from backup_engine.media.entries import encode_entry, entries_list, iter_entries
from backup_engine.media.manifest import (
    MEDIA_SNAPSHOTS,
    MediaEntry,
    MediaSnapshotManifest,
    decode_entry,
)
from backup_engine.media.restore import restore_media
from backup_engine.media.snapshot import take_media_snapshot
from backup_engine.storage import LocalStorage

pytestmark = pytest.mark.media


def _snapshot(tmp_path: Path, files: int = 6) -> tuple[LocalStorage, MediaSnapshotManifest]:
    tree = tmp_path / "up"
    for i in range(files):
        (tree / f"d{i % 2}").mkdir(parents=True, exist_ok=True)
        (tree / f"d{i % 2}" / f"f{i}").write_bytes(os.urandom(100 + i))
    (tmp_path / "repo").mkdir()
    repo = LocalStorage(tmp_path / "repo")
    return repo, take_media_snapshot(repo, get_codec("zstd"), tree)


def _forge_list(repo: LocalStorage, raw: bytes, count: int) -> None:
    """The list replaced by `raw` (compressed), with a manifest that matches it: an attacker
    who can write the bucket rewrites both."""
    manifest = MEDIA_SNAPSHOTS.list(repo).backups[-1]
    assert manifest.entries_object is not None
    data = zstandard.ZstdCompressor().compress(raw)
    repo.delete(manifest.entries_object.key)
    repo.put_bytes(manifest.entries_object.key, data)
    stored = replace(manifest.entries_object, size=len(data),
                     sha256=hashlib.sha256(data).hexdigest())  # fmt: skip
    forged = replace(manifest, entries_object=stored, entry_count=count)
    repo.delete(MEDIA_SNAPSHOTS.manifest_key(manifest.backup_id))
    repo.put_bytes(MEDIA_SNAPSHOTS.manifest_key(manifest.backup_id), forged.to_json().encode())


GOOD = encode_entry(MediaEntry("a", "dir", 0o755, 0))


@pytest.mark.parametrize(
    ("raw", "count", "refusal"),
    [
        (GOOD.rstrip() + b"," + GOOD, 2, "is not one entry"),  # two values on one line
        (GOOD + b"\n" + GOOD, 2, "not JSON"),  # an empty line
        (b"[" * 100_000 + b"]" * 100_000 + b"\n", 1, "nests too deeply"),  # deeper than the stack
        (b'"just a string"\n', 1, "not an object"),
        (b"[1, 2]\n", 1, "not an object"),
        (GOOD + GOOD[:-5], 2, "middle of a line"),
        (
            b'{"path": "b", "type": "dir", "mode": 493, "mtime_ns": 0, "evil": 1}\n',
            1,
            "unknown fields: evil",
        ),
    ],
    ids=["two-values", "empty-line", "deep-nesting", "string", "array", "cut", "unknown-field"],
)
def test_a_forged_list_is_one_clear_refusal(
    tmp_path: Path, raw: bytes, count: int, refusal: str
) -> None:
    repo, _ = _snapshot(tmp_path)
    _forge_list(repo, raw, count)
    with pytest.raises(CorruptObject, match=refusal):
        restore_media(repo, "latest", tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_lines_read_a_mib_at_a_time_give_every_entry_in_order(tmp_path: Path) -> None:
    """Entries spanning many reads (and lines cut across them) come back whole, in order."""
    repo, manifest = _snapshot(tmp_path, files=3000)
    entries = list(iter_entries(repo, manifest))
    assert len(entries) == manifest.entry_count == 3002
    names = [e.path for e in entries if e.type == "file"]
    assert sorted(names, key=lambda p: p.split("/")) == names
    with entries_list(repo, manifest) as read:
        assert list(read()) == entries  # the checked first read
        assert list(read()) == entries  # the second read, not checked again


def test_the_checks_are_skipped_only_after_a_whole_checked_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first read stopped early does not vouch for the rest: the next read checks again."""
    repo, manifest = _snapshot(tmp_path)
    calls: list[str] = []
    real = manifest_module.MediaEntry.problem

    def counted(entry: MediaEntry) -> str | None:
        calls.append(entry.path)
        return real(entry)

    monkeypatch.setattr(manifest_module.MediaEntry, "problem", counted)
    with entries_list(repo, manifest) as read:
        next(read())  # stopped after one entry
        assert len(list(read())) == manifest.entry_count
        checked = len(calls)
        assert checked == 1 + manifest.entry_count
        assert len(list(read())) == manifest.entry_count
        assert len(calls) == checked  # the whole read checked them all: not again


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    names=st.lists(st.text(min_size=1, max_size=12).filter(lambda n: "\0" not in n), max_size=30),
    read_size=st.integers(min_value=1, max_value=64),
)
def test_any_names_come_back_whole_whatever_the_read_size(
    monkeypatch: pytest.MonkeyPatch, names: list[str], read_size: int
) -> None:
    """Names with newlines, commas, brackets, quotes or any unicode, read in pieces of any
    size: each line comes back as exactly the entry written (JSON escapes a newline inside a
    string, so joining lines with commas never splits or merges an entry)."""
    monkeypatch.setattr(entries_module, "_LINES", read_size)
    written = [MediaEntry(name, "dir", 0o755, i) for i, name in enumerate(names)]
    raw = b"".join(encode_entry(entry) for entry in written)
    spool = io.BytesIO(zstandard.ZstdCompressor().compress(raw))
    values = list(entries_module._values(spool, "test"))
    assert [decode_entry(value) for value in values] == written
