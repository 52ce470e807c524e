"""Hostile tar streams, as a forged base backup would carry them: whatever the members say,
extraction never creates, writes, chmods or utimes anything outside its target."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backup_engine.errors import CorruptObject
from backup_engine.tarfiles import extract_stream


def _member(
    kind: str, name: str, arg: str = "", mode: int = 0o644
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = mode
    info.mtime = 1_700_000_000
    data = b""
    if kind == "file":
        data = f"written by {name}\n".encode()
        info.size = len(data)
    elif kind == "dir":
        info.type = tarfile.DIRTYPE
    elif kind == "symlink":
        info.type, info.linkname = tarfile.SYMTYPE, arg
    elif kind == "hardlink":
        info.type, info.linkname = tarfile.LNKTYPE, arg
    elif kind == "fifo":
        info.type = tarfile.FIFOTYPE
    elif kind == "chardev":
        info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    return info, data


def _tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out.getvalue()


def _state(root: Path) -> dict[str, tuple[int, int, bytes | str]]:
    """Everything below `root`, never following links: (mode, mtime, content or link)."""
    found: dict[str, tuple[int, int, bytes | str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                content: bytes | str = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                content = path.read_bytes()
            else:
                content = ""
            found[str(path.relative_to(root))] = (st.st_mode, st.st_mtime_ns, content)
    return found


@pytest.fixture
def box(tmp_path: Path) -> Path:
    """box/target (empty, where extraction goes) beside box/outside (a sentinel tree)."""
    (tmp_path / "target").mkdir()
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "secret").write_text("sentinel")
    (outside / "sub" / "deep").write_text("sentinel")
    return tmp_path


def _extract(box: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> CorruptObject | None:
    try:
        extract_stream(io.BytesIO(_tar(members)), box / "target", where="base.tar")
    except CorruptObject as exc:
        return exc
    return None


def _assert_contained(box: Path, before: dict[str, tuple[int, int, bytes | str]]) -> None:
    assert sorted(p.name for p in box.iterdir()) == ["outside", "target"]
    assert _state(box / "outside") == before
    for dirpath, _, filenames in os.walk(box / "target"):
        for name in filenames:
            mode = (Path(dirpath) / name).lstat().st_mode
            assert not mode & (stat.S_ISUID | stat.S_ISGID), f"{name} kept setuid/setgid"


ATTACKS: dict[str, list[tuple[str, ...]]] = {
    "absolute symlink, then a file through it": [
        ("symlink", "a", "{outside}"),
        ("file", "a/secret"),
    ],
    "relative symlink, then a file through it": [("symlink", "a", "../outside"), ("file", "a/new")],
    "chained symlinks": [("symlink", "a", ".."), ("symlink", "b", "a/outside"), ("file", "b/x")],
    "symlink, then a file of the same name": [("symlink", "a", "../outside/secret"), ("file", "a")],
    "symlink to a dir, then a dir through it": [("symlink", "d", "{outside}"), ("dir", "d/sub/x")],
    "dot-dot in a name": [("file", "../outside/secret")],
    "absolute name": [("file", "{outside}/secret")],
    "hard link to a file outside": [("hardlink", "h", "{outside}/secret")],
    "hard link through a symlink": [("symlink", "a", "../outside"), ("hardlink", "h", "a/secret")],
    "hard link to an earlier symlink": [
        ("symlink", "a", "../outside/secret"),
        ("hardlink", "h", "a"),
    ],
    "a device": [("chardev", "null")],
    "a fifo": [("fifo", "pipe")],
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_hostile_members_never_touch_anything_outside(box: Path, attack: str) -> None:
    before = _state(box / "outside")
    members = [
        _member(kind, name.format(outside=box / "outside"), arg.format(outside=box / "outside"))
        for kind, name, *rest in ATTACKS[attack]
        for arg in [rest[0] if rest else ""]
    ]
    error = _extract(box, members)
    assert error is not None, f"{attack}: extracted without complaint"
    assert "base.tar" in str(error)
    _assert_contained(box, before)


def test_setuid_bits_are_dropped_and_hard_links_stay_links(box: Path) -> None:
    error = _extract(box, [
        _member("dir", "bin", mode=0o4755),
        _member("file", "bin/tool", mode=0o6755),
        _member("hardlink", "bin/again", "bin/tool"),
        _member("symlink", "link", "bin/tool"),
    ])  # fmt: skip
    assert error is None
    tool, again = box / "target/bin/tool", box / "target/bin/again"
    assert stat.S_IMODE(tool.stat().st_mode) == 0o755
    assert tool.stat().st_ino == again.stat().st_ino
    assert os.readlink(box / "target/link") == "bin/tool"
    assert tool.stat().st_mtime == 1_700_000_000


NAMES = ["a", "b", "a/b", "a/b/c", "b/a", "../x", "./a", "a/../b", "c", "a/c"]
TARGETS = ["..", "../outside", "{outside}", "{outside}/secret", "a", "b", ".", "/", "../.."]
member_specs = st.lists(
    st.tuples(
        st.sampled_from(["file", "dir", "symlink", "hardlink"]),
        st.sampled_from(NAMES),
        st.sampled_from(TARGETS + NAMES),
        st.sampled_from([0o644, 0o755, 0o4755, 0o2700, 0o000]),
    ),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(specs=member_specs)
def test_no_member_sequence_escapes(
    tmp_path_factory: pytest.TempPathFactory, specs: list[tuple[str, str, str, int]]
) -> None:
    box = tmp_path_factory.mktemp("box")
    (box / "target").mkdir()
    (box / "outside" / "sub").mkdir(parents=True)
    (box / "outside" / "secret").write_text("sentinel")
    before = _state(box / "outside")
    outside = str(box / "outside")
    members = [
        _member(kind, name, arg.format(outside=outside), mode) for kind, name, arg, mode in specs
    ]
    _extract(box, members)
    _assert_contained(box, before)
    for path in (box / "target").rglob("*"):  # what was written stays below the target
        if not path.is_symlink():
            assert path.resolve().is_relative_to((box / "target").resolve())


def test_a_stream_longer_than_its_manifest_says_is_refused(box: Path) -> None:
    data = _tar([_member("file", "big")])
    with pytest.raises(CorruptObject, match="more than the 100 bytes"):
        extract_stream(io.BytesIO(data), box / "target", where="base.tar", limit=100)
