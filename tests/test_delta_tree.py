"""DeltaTree: an existing tree rewritten in place to equal an archive, writing only the blocks
that differ, removing what the archive does not hold, never writing through a link (symbolic or
hard) or outside the root. Whatever the tree held before, it ends equal to the archive."""

from __future__ import annotations

import io
import os
import stat
import struct
import tarfile
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backup_engine.delta import BLOCK, DeltaStats, DeltaTree
from backup_engine.tarfiles import extract_stream


def _archive(entries: dict[str, bytes | None], links: dict[str, str] | None = None) -> bytes:
    """A tar of `entries` (None: a directory) and symbolic `links`."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o700
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o600
                tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return out.getvalue()


def _delta(root: Path, archive: bytes, **options: object) -> DeltaStats:
    stats = DeltaStats()
    root.mkdir(exist_ok=True)
    extract_stream(io.BytesIO(archive), root, where="test.tar",
                   writer=lambda r, w: DeltaTree(r, w, stats, **options))  # type: ignore[arg-type]  # fmt: skip
    return stats


def _tree(root: Path) -> dict[str, bytes | str | None]:
    found: dict[str, bytes | str | None] = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if path.is_symlink():
            found[name] = "-> " + os.readlink(path)
        elif path.is_dir():
            found[name] = None
        else:
            found[name] = path.read_bytes()
    return found


def test_only_the_changed_blocks_are_written_and_extras_removed(tmp_path: Path) -> None:
    root = tmp_path / "pgdata"
    big = os.urandom(BLOCK * 64)
    archive = _archive({"base": None, "base/1": big, "base/2": b"same", "global": None,
                        "global/pg_control": b"control"})  # fmt: skip
    _delta(root, archive)  # into an empty directory: everything written
    inode = (root / "base/1").stat().st_ino
    changed = bytearray(big)
    changed[BLOCK * 10 + 5] ^= 0xFF  # one page differs on disk
    (root / "base/1").write_bytes(bytes(changed))
    (root / "base/2").write_bytes(b"same but longer")  # same prefix, longer file
    (root / "stale").write_bytes(b"x")  # not in the backup
    (root / "base/stale-dir").mkdir()
    (root / "base/stale-dir/f").write_bytes(b"y")

    stats = _delta(root, archive)

    assert _tree(root) == {"base": None, "base/1": big, "base/2": b"same", "global": None,
                           "global/pg_control": b"control"}  # fmt: skip
    assert (root / "base/1").stat().st_ino == inode  # rewritten in place
    assert stats.written == BLOCK  # one page, not the file
    assert (stats.kept, stats.changed, stats.removed) == (1, 2, 2)
    assert stats.compared == len(big) + len(b"same") + len(b"control")


def test_links_are_replaced_never_written_through(tmp_path: Path) -> None:
    root, outside = tmp_path / "pgdata", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "victim").write_bytes(b"keep me")
    (root / "a").symlink_to(outside / "victim")  # a file of the backup's name is a symlink
    (root / "d").symlink_to(outside)  # a directory of the backup's is a symlink
    (outside / "shared").write_bytes(b"old")
    os.link(outside / "shared", root / "h")  # a file hard-linked elsewhere (pg_upgrade --link)
    (root / "l").mkdir()  # a directory where the backup has a symlink

    _delta(root, _archive({"a": b"new", "d": None, "d/f": b"inside", "h": b"new h"},
                          links={"l": "somewhere"}))  # fmt: skip

    assert (outside / "victim").read_bytes() == b"keep me"
    assert (outside / "shared").read_bytes() == b"old"
    assert sorted(p.name for p in outside.iterdir()) == ["shared", "victim"]
    assert _tree(root) == {"a": b"new", "d": None, "d/f": b"inside", "h": b"new h",
                           "l": "-> somewhere"}  # fmt: skip
    assert stat.S_IMODE((root / "a").stat().st_mode) == 0o600


def test_kept_names_and_other_top_level_entries_stay(tmp_path: Path) -> None:
    root = tmp_path / "space"
    (root / "PG_17_1").mkdir(parents=True)
    (root / "PG_17_1" / "data").write_bytes(b"another major's files")
    (root / "PG_15_1").mkdir()
    (root / "PG_15_1" / "old").write_bytes(b"gone")
    _delta(root, _archive({"PG_15_1": None, "PG_15_1/16384": b"x"}), sweep_top=False)
    assert _tree(root) == {"PG_15_1": None, "PG_15_1/16384": b"x", "PG_17_1": None,
                           "PG_17_1/data": b"another major's files"}  # fmt: skip

    data = tmp_path / "data"
    data.mkdir()
    (data / ".marker").write_bytes(b"1")
    (data / "other").write_bytes(b"2")
    _delta(data, _archive({"f": b"3"}), keep=frozenset({".marker"}))
    assert _tree(data) == {".marker": b"1", "f": b"3"}


_names = st.sampled_from(["a", "b", "c", "d/e", "d/f", "g/h/i"])
_contents = st.binary(max_size=3 * BLOCK)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    before=st.dictionaries(_names, _contents, max_size=6),
    after=st.dictionaries(_names, _contents, max_size=6),
    flip=st.integers(min_value=0, max_value=10_000),
)
def test_any_tree_ends_equal_to_the_archive(
    tmp_path_factory: object, before: dict[str, bytes], after: dict[str, bytes], flip: int
) -> None:
    root = tmp_path_factory.mktemp("delta")  # type: ignore[attr-defined]
    files: dict[str, bytes | None] = {
        n: d for n, d in before.items() if not any(o.startswith(n + "/") for o in before)
    }
    files["z"] = b"an archive holds at least one member"
    _delta(root, _archive(files))
    for name, data in list(files.items())[: flip % 3]:  # damage a few files in place
        if data is not None and data:
            (root / name).write_bytes(data[: flip % len(data)] + b"!" + data[flip % len(data) :])
    wanted = {n: d for n, d in after.items() if not any(o.startswith(n + "/") for o in after)}
    wanted["z"] = b"an archive holds at least one member"
    dirs = {"/".join(n.split("/")[:i]) for n in wanted for i in range(1, n.count("/") + 1)}
    entries: dict[str, bytes | None] = {d: None for d in sorted(dirs)}
    entries.update(wanted)
    stats = _delta(root, _archive(entries))
    assert _tree(root) == entries
    assert stats.written <= sum(len(d) for d in wanted.values())


def test_a_fifo_in_the_target_is_refused_never_waited_on(tmp_path: Path) -> None:
    """A FIFO where pg_control or the marker belongs: refused at once, in one line, not a
    delta restore that hangs waiting for a writer or a reader."""
    from backup_engine.errors import TargetNotEmpty, TargetWriteFailed
    from backup_engine.postgres.delta_target import CONTROL, MARKER, delta_target

    def target() -> AbstractContextManager[object]:
        return delta_target(pgdata, "7", "b1", {}, 15, in_use=lambda _: None)

    pgdata = tmp_path / "pgdata"
    (pgdata / "global").mkdir(parents=True)
    os.mkfifo(pgdata / CONTROL)
    with pytest.raises(TargetNotEmpty, match="no PostgreSQL cluster"), target():
        pass
    os.unlink(pgdata / CONTROL)
    (pgdata / CONTROL).write_bytes(struct.pack("<QII", 7, 1300, 0))  # cluster 7's pg_control
    os.mkfifo(pgdata / MARKER)
    with pytest.raises(TargetWriteFailed, match="cannot prepare"), target():
        pass
    assert (pgdata / CONTROL).exists()  # refused before anything was changed
