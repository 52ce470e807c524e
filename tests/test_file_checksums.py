"""Checksums compared while a restore writes: only PostgreSQL's exact manifest layout, with every
listed file seen and equal, lets pg_verifybackup skip reading the files back; anything else
(including a manifest an attacker shaped) sends the restore to the full pg_verifybackup."""

from __future__ import annotations

import io
import os
import struct
import threading
from pathlib import Path

import crc32c
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backup_engine.postgres import file_checksums
from backup_engine.postgres.file_checksums import FileChecksums

NAMES = st.from_regex(r"(base/[0-9]{1,5}/)?[0-9]{1,6}(_fsm|_vm)?", fullmatch=True)


def _entry(name: str, content: bytes, algorithm: str = "CRC32C") -> str:
    checksum = struct.pack("<I", crc32c.crc32c(content)).hex()
    return (
        f'{{ "Path": "{name}", "Size": {len(content)}, "Last-Modified": "2026-11-30 18:06:45 '
        f'GMT", "Checksum-Algorithm": "{algorithm}", "Checksum": "{checksum}" }}'
    )


def _manifest(lines: list[str]) -> str:
    """PostgreSQL's layout: one entry per line, commas after all but the last."""
    body = ",\n".join(lines)
    return (
        '{ "PostgreSQL-Backup-Manifest-Version": 1,\n"Files": [\n'
        f"{body}\n],\n"
        '"WAL-Ranges": [\n{ "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100" }\n'
        '],\n"Manifest-Checksum": "00"}\n'
    )


def _written(files: dict[str, bytes], piece: int = 7) -> FileChecksums:
    """The checksums as a restore records them: each file read through in pieces."""
    sums = FileChecksums()
    for name, content in files.items():
        reader = sums.reading(io.BytesIO(content))
        while reader.read(piece):
            pass
        sums.record(name, reader)
    return sums


def _pgdata(tmp_path: Path, manifest: str) -> Path:
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir(exist_ok=True)
    (pgdata / "backup_manifest").write_text(manifest)
    return pgdata


@settings(max_examples=60, deadline=None)
@given(
    files=st.dictionaries(NAMES, st.binary(max_size=300), min_size=1, max_size=8),
    piece=st.integers(1, 64),
    data=st.data(),
)
def test_equal_checksums_match_and_any_changed_one_does_not(
    tmp_path_factory: pytest.TempPathFactory,
    files: dict[str, bytes],
    piece: int,
    data: st.DataObject,
) -> None:
    tmp = tmp_path_factory.mktemp("m")
    sums = _written(files, piece)
    entries = [_entry(name, content) for name, content in files.items()]
    assert sums.match(_pgdata(tmp, _manifest(entries)))
    changed = data.draw(st.sampled_from(sorted(files)))
    files[changed] += b"!"
    entries = [_entry(name, content) for name, content in files.items()]
    assert not sums.match(_pgdata(tmp, _manifest(entries)))


def test_the_checksum_is_written_as_postgresql_writes_it(tmp_path: Path) -> None:
    """The bytes of a CRC32C in memory order: PG_VERSION "15\\n" is 8a744722 in a real
    backup_manifest (PostgreSQL 15 here)."""
    sums = _written({"PG_VERSION": b"15\n"})
    line = _entry("PG_VERSION", b"15\n")
    assert '"Checksum": "8a744722"' in line
    assert sums.match(_pgdata(tmp_path, _manifest([line])))


GOOD = {"PG_VERSION": b"15\n", "base/1/1255": b"x" * 100}
VERSION, CATALOG = _entry("PG_VERSION", b"15\n"), _entry("base/1/1255", b"x" * 100)


@pytest.mark.parametrize(
    "manifest",
    [
        pytest.param(_manifest([VERSION, _entry("base/1/9", b"")]), id="unseen"),
        pytest.param(
            _manifest([_entry("PG_VERSION", b"15\n", "SHA256"), CATALOG]),
            id="other-algorithm",
        ),
        pytest.param(
            _manifest([_entry("PG_VERSION", b"15\n").replace('"Path"', '"Encoded-Path"')]),
            id="encoded-path",
        ),
        pytest.param(
            _manifest([VERSION + ", " + CATALOG]),
            id="two-on-a-line",
        ),
        pytest.param(
            _manifest([_entry("PG_VERSION", b"15\n").replace(", ", ",\n", 1)]), id="split-line"
        ),
        pytest.param(
            _manifest([_entry("PG_VERSION", b"15\n")]).replace("],\n", "", 1), id="no-end"
        ),
        pytest.param(
            _manifest([]).replace('"Files": [\n', '"Files": [ ' + _entry("PG_VERSION", b"15\n")),
            id="entry-on-the-header",
        ),
        pytest.param("[" * 100_000 + "\n", id="not-a-manifest"),
        pytest.param("", id="empty"),
        pytest.param(
            _manifest(['{ "Path": "' + "a" * 70_000 + '" }']), id="line-longer-than-postgres-writes"
        ),
    ],
)
def test_anything_but_postgresqls_layout_with_every_file_equal_goes_to_pg_verifybackup(
    tmp_path: Path, manifest: str
) -> None:
    assert not _written(GOOD).match(_pgdata(tmp_path, manifest))


def test_a_manifest_that_is_a_symlink_or_a_fifo_is_not_read(tmp_path: Path) -> None:
    sums = _written(GOOD)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text(_manifest([_entry(n, c) for n, c in GOOD.items()]))
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    (pgdata / "backup_manifest").symlink_to(elsewhere)
    assert not sums.match(pgdata)
    (pgdata / "backup_manifest").unlink()
    os.mkfifo(pgdata / "backup_manifest")
    answer: list[bool] = []
    reader = threading.Thread(target=lambda: answer.append(sums.match(pgdata)), daemon=True)
    reader.start()
    reader.join(10)
    assert answer == [False]  # no writer ever opens the FIFO: a blocking open would hang
    assert not sums.match(tmp_path / "nowhere")


def test_too_many_files_or_no_hardware_crc_leave_it_all_to_pg_verifybackup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(file_checksums, "MAX_FILES", 1)
    sums = _written(GOOD)
    assert not sums.available and not sums.sums
    assert not sums.match(_pgdata(tmp_path, _manifest([_entry(n, c) for n, c in GOOD.items()])))
    monkeypatch.setattr(file_checksums, "MAX_FILES", 100)
    monkeypatch.setattr(crc32c, "hardware_based", False)
    plain = FileChecksums()
    content = io.BytesIO(b"x")
    assert not plain.available and plain.reading(content) is content
