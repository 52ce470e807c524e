"""Our own tar reader: what tar writers produce restores byte for byte, and every damaged or
forged header (extended headers, sizes, times, owners, cut-off streams) is one refusal naming
the object, never a crash, a hang or a write outside the target."""

from __future__ import annotations

import io
import os
import tarfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backup_engine.errors import CorruptObject
from backup_engine.streams import ReadAhead
from backup_engine.tarfiles import BLOCK, extract_stream

FORMATS = {"ustar": tarfile.USTAR_FORMAT, "gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT}


def _tar(
    files: dict[str, bytes], fmt: int = tarfile.PAX_FORMAT, pax: dict[str, str] | None = None
) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1_700_000_000, 0o640
            info.pax_headers = dict(pax or {})
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _extended(kind: bytes, data: bytes) -> bytes:
    """A raw extended header (pax or GNU long name) with any content, valid checksum."""
    info = tarfile.TarInfo("././@extended")
    info.type, info.size = kind, len(data)
    return info.tobuf(tarfile.USTAR_FORMAT) + data + bytes(-len(data) % BLOCK)


def _extract(data: bytes, target: Path, limit: int | None = None) -> None:
    target.mkdir(exist_ok=True)
    extract_stream(io.BytesIO(data), target, where="base.tar", limit=limit)


def _refused(data: bytes, target: Path) -> str:
    with pytest.raises(CorruptObject) as caught:
        _extract(data, target)
    assert "base.tar" in str(caught.value)
    return str(caught.value)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_writer_format_restores_byte_for_byte(tmp_path: Path, fmt: str) -> None:
    files = {
        "empty": b"",
        "one-block": b"x" * BLOCK,
        "odd": os.urandom(777),
        "crosses-chunks": os.urandom((1 << 20) + 700),  # beyond one read-ahead chunk
        "deep/" * 8 + "file": b"deep",
    }
    if fmt != "ustar":  # ustar cannot hold a 150-character name
        files["long-" * 30 + "name"] = b"long name"
    _extract(_tar(files, FORMATS[fmt]), tmp_path / "t")
    for name, data in files.items():
        assert (tmp_path / "t" / name).read_bytes() == data, name
        assert (tmp_path / "t" / name).stat().st_mtime == 1_700_000_000


def test_gnu_long_link_names_and_pax_global_headers_apply(tmp_path: Path) -> None:
    long_target = "t" * 200
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, long_target
        tar.addfile(link)
    _extract(out.getvalue(), tmp_path / "gnu")
    assert os.readlink(tmp_path / "gnu" / "link") == long_target

    shared = _extended(tarfile.XGLTYPE, b"22 mtime=1600000000.5\n")
    _extract(shared + _tar({"a": b"1", "b": b"2"}), tmp_path / "pax")
    for name in "ab":
        assert (tmp_path / "pax" / name).stat().st_mtime_ns == 1_600_000_000_500_000_000


@pytest.mark.parametrize(
    ("pax", "why"),
    [
        ({"size": "-5"}, "out of range"),
        ({"size": "five"}, "malformed pax field"),
        ({"mtime": "nan"}, "out of range"),
        ({"mtime": "1e300"}, "out of range"),
        ({"uid": str(1 << 40)}, "out of range"),
        ({"gid": "-1"}, "out of range"),
        ({"GNU.sparse.major": "1"}, "sparse"),
    ],
)
def test_pax_values_out_of_range_are_refused(tmp_path: Path, pax: dict[str, str], why: str) -> None:
    assert why in _refused(_tar({"f": b"data"}, pax=pax), tmp_path / "t")
    assert list((tmp_path / "t").iterdir()) == []


@pytest.mark.parametrize(
    "record",
    [b"5 a=b", b"99 path=x\n", b"x path=y\n", b"3 =\n", b" 12 path=x\n", b"9 pathx\n", b"-3 a\n"],
)
def test_malformed_pax_records_are_refused(tmp_path: Path, record: bytes) -> None:
    data = _extended(tarfile.XHDTYPE, record) + _tar({"f": b"data"})
    assert "pax" in _refused(data, tmp_path / "t")


def test_cut_off_and_damaged_streams_are_refused(tmp_path: Path) -> None:
    whole = _tar({"f": os.urandom(3000)})
    assert "empty" in _refused(b"", tmp_path / "a")
    assert "no member" in _refused(bytes(2 * BLOCK), tmp_path / "b")
    assert "end-of-archive" in _refused(whole[: BLOCK * 7], tmp_path / "c")  # header and data
    assert "ends after" in _refused(whole[: BLOCK * 4], tmp_path / "d")
    assert "not a readable tar" in _refused(whole[:100], tmp_path / "e")
    bad_checksum = bytearray(whole)
    bad_checksum[0] ^= 0xFF
    assert "not a readable tar" in _refused(bytes(bad_checksum), tmp_path / "f")
    huge = tarfile.TarInfo("././@LongLink")
    huge.type, huge.size = tarfile.GNUTYPE_LONGNAME, 10**10  # a 10 GB "long name"
    assert "extended header of" in _refused(huge.tobuf(tarfile.GNU_FORMAT), tmp_path / "g")


def test_the_limit_counts_headers_and_data(tmp_path: Path) -> None:
    data = _tar({"f": b"x" * 4000})
    _extract(data, tmp_path / "ok", limit=len(data))
    with pytest.raises(CorruptObject, match="more than the 4096 bytes"):
        _extract(data, tmp_path / "over", limit=4096)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    spot=st.integers(min_value=0, max_value=5 * BLOCK - 1),
    value=st.integers(min_value=0, max_value=255),
    cut=st.integers(min_value=0, max_value=8 * BLOCK),
)
def test_a_damaged_stream_is_refused_or_restored_never_a_crash(
    tmp_path_factory: pytest.TempPathFactory, spot: int, value: int, cut: int
) -> None:
    whole = bytearray(_tar({"dir/f": b"a" * 600, "g" * 120: b"b"}))
    whole[spot] = value
    box = tmp_path_factory.mktemp("box")
    try:
        _extract(bytes(whole[: len(whole) - cut]), box / "t")
    except CorruptObject as exc:
        assert "base.tar" in str(exc)
    for path in (box / "t").rglob("*"):
        assert path.resolve().is_relative_to((box / "t").resolve())


class _Failing(io.RawIOBase):
    def __init__(self, good: int) -> None:
        self.left = good

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.left <= 0:
            raise CorruptObject("stored object x does not match its recorded sha256")
        n = min(len(buffer), self.left)
        buffer[:n] = b"z" * n
        self.left -= n
        return n


def test_read_ahead_hands_over_errors_and_stops_its_thread() -> None:
    with ReadAhead(_Failing(3000), chunk=1024, depth=2) as ahead:
        assert bytes(ahead.read(10)) == b"z" * 10
        got = 10
        with pytest.raises(CorruptObject, match="sha256"):
            while ahead.read():
                got += 1
        with pytest.raises(CorruptObject):  # again, not a silent end
            ahead.read()
    with ReadAhead(_Failing(1 << 30), chunk=1024, depth=2) as early:
        early.read(1)  # the consumer stops early: leaving joins the thread
    assert not [t for t in threading.enumerate() if t.name == "read-ahead"]
