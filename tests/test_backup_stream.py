"""The stream of a BASE_BACKUP into storage, fed the events a server sends: what it refuses to
store. (The real server's stream is exercised in test_tablespaces.py and the drills.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backup_engine.codecs import get_codec
from backup_engine.errors import CommandFailed
from backup_engine.postgres.backup_stream import stream_backup
from backup_engine.postgres.replication import (
    BackupRequest,
    Ended,
    Event,
    ManifestFollows,
    NewArchive,
    Progress,
    Started,
)
from backup_engine.progress import Progress as Bar
from backup_engine.storage import LocalStorage

SERVER = BackupRequest(label="t", compression="zstd")


class Replayed:
    """Stands in for the replication connection: plays back a recorded event sequence."""

    def __init__(self, events: list[Event | bytes]) -> None:
        self.events = events

    def base_backup(self, request: BackupRequest) -> Iterator[Event | memoryview]:
        for event in self.events:
            yield memoryview(event) if isinstance(event, bytes) else event


def _run(tmp_path: Path, events: list[Event | bytes], request: BackupRequest = SERVER) -> None:
    storage = LocalStorage(tmp_path)
    with Bar().task("t", None) as task:
        stream_backup(storage, get_codec("zstd"), Replayed(events), request, "b/", task)  # type: ignore[arg-type]


def _whole(archive: str, sizes: list[int]) -> list[Event | bytes]:
    return [Started(1, 1), NewArchive(archive, ""), b"x" * 10, *(Progress(n) for n in sizes),
            ManifestFollows(), b"{}", Ended(2, 1)]  # fmt: skip


def test_a_server_compressed_archive_is_stored_with_the_size_the_server_reported(
    tmp_path: Path,
) -> None:
    storage = LocalStorage(tmp_path)
    with Bar().task("t", None) as task:
        got = stream_backup(storage, get_codec("zstd"), Replayed(_whole("base.tar.zst", [5120])),  # type: ignore[arg-type]
                            SERVER, "b/", task)  # fmt: skip
    assert [(a.name, a.size, a.raw_size) for a in got.archives] == [("base.tar.zst", 10, 5120)]


def test_an_archive_without_a_size_report_is_refused_and_nothing_is_kept(tmp_path: Path) -> None:
    with pytest.raises(CommandFailed, match=r"did not report the size of base\.tar\.zst"):
        _run(tmp_path, _whole("base.tar.zst", []))
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


@pytest.mark.parametrize("name", ["base.tar", "../x.tar.zst", "0.tar.zst", "base.tar.gz", "x"])
def test_an_unexpected_archive_name_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(CommandFailed, match="sent an archive named"):
        _run(tmp_path, _whole(name, [5120]))


def test_a_stream_that_ends_early_stores_nothing(tmp_path: Path) -> None:
    events: list[Event | bytes] = [Started(1, 1), NewArchive("base.tar.zst", ""), b"x" * 10]
    with pytest.raises(CommandFailed, match="ended before sending the whole backup"):
        _run(tmp_path, events)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
