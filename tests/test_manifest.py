from __future__ import annotations

import json
import struct
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backup_engine.errors import CorruptObject, UsageError
from backup_engine.postgres.backup_facts import system_identifier
from backup_engine.postgres.lsn import format_lsn, parse_lsn, wal_file_name
from backup_engine.postgres.manifest import (
    BaseBackupManifest,
    StoredFile,
    base_backup_prefix,
    is_backup_id,
    manifest_key,
    new_backup_id,
)
from backup_engine.storage.base import Storage

SEG = 16 * 1024 * 1024


def sample_manifest() -> BaseBackupManifest:
    return BaseBackupManifest(
        backup_id="20261125T020000Z",
        label="nightly",
        start_time=datetime(2026, 11, 25, 2, 0, 0, tzinfo=UTC),
        stop_time=datetime(2026, 11, 25, 2, 0, 9, 500000, tzinfo=UTC),
        start_lsn="0/2000028",
        stop_lsn="0/2000100",
        start_wal_file="000000010000000000000002",
        stop_wal_file="000000010000000000000002",
        timeline=1,
        pg_version="15.18",
        pg_version_num=150018,
        system_identifier="7311939986022460543",
        wal_segment_size=SEG,
        compression="zstd",
        files=(StoredFile("base.tar.zst", "postgres/base/x/base.tar.zst", 10, "ab" * 32, 99),),
        tool_version="0.1.0",
        source="db:5432/postgres",
    )


def genuine(manifest: BaseBackupManifest) -> BaseBackupManifest:
    """The manifest as the tool writes it: WAL file names that match its LSNs, one object under
    its own prefix (expire refuses manifests that do not hang together)."""
    seg, tli = manifest.wal_segment_size, manifest.timeline
    key = f"{base_backup_prefix(manifest.backup_id)}base.tar.zst"
    return replace(
        manifest,
        start_wal_file=wal_file_name(tli, manifest.start_lsn_value, seg),
        stop_wal_file=wal_file_name(tli, manifest.stop_lsn_value, seg, previous=True),
        files=(StoredFile("base.tar.zst", key, 1, "ab" * 32, 99),),
    )


def store_backup(repo: Storage, manifest: BaseBackupManifest) -> BaseBackupManifest:
    """Write a genuine-looking backup (its one-byte object and its manifest) into `repo`."""
    stored = genuine(manifest)
    repo.put_bytes(stored.files[0].key, b"x")
    repo.put_bytes(manifest_key(stored.backup_id), stored.to_json().encode())
    return stored


def test_manifest_round_trips_through_json() -> None:
    manifest = sample_manifest()
    text = manifest.to_json()
    assert json.loads(text)["stop_time"] == "2026-11-25T02:00:09.500000Z"
    assert BaseBackupManifest.from_json(text, where="m") == manifest
    assert manifest.pg_major == 15
    assert manifest.stored_bytes == 10 and manifest.raw_bytes == 99


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: "{not json",
        lambda d: json.dumps({**d, "kind": "redis-rdb"}),
        lambda d: json.dumps({**d, "format_version": 99}),
        lambda d: json.dumps({k: v for k, v in d.items() if k != "stop_lsn"}),
        lambda d: json.dumps({**d, "start_time": "2026-11-25T02:00:00"}),
        lambda d: json.dumps({**d, "files": [{"name": "x"}]}),
        lambda d: json.dumps([1, 2]),
    ],
)
def test_damaged_manifests_are_rejected_with_their_location(damage: object) -> None:
    data = sample_manifest().to_dict()
    with pytest.raises(CorruptObject, match=r"repo/backup\.json"):
        BaseBackupManifest.from_json(damage(data), where="repo/backup.json")  # type: ignore[operator]


def test_missing_file_entry_is_corruption() -> None:
    with pytest.raises(CorruptObject, match="backup_manifest"):
        replace(sample_manifest()).file("backup_manifest")


def test_backup_ids_sort_by_time() -> None:
    first = new_backup_id(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert first == "20260102T030405Z"
    assert is_backup_id(first) and is_backup_id(first + "-2") and not is_backup_id("latest")


@given(st.integers(0, 2**64 - 1))
def test_lsn_text_round_trips(lsn: int) -> None:
    assert parse_lsn(format_lsn(lsn)) == lsn


@pytest.mark.parametrize("text", ["", "0", "0/", "G/1", "1/2/3", "123456789/0"])
def test_bad_lsn_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError):
        parse_lsn(text)


@pytest.mark.parametrize(
    ("timeline", "lsn", "previous", "name"),
    [
        (1, 0x2000028, False, "000000010000000000000002"),
        (1, 0x3000000, False, "000000010000000000000003"),
        (1, 0x3000000, True, "000000010000000000000002"),  # end exactly on a boundary
        (2, 0x1_00000000, False, "000000020000000100000000"),
        (3, 0x1_FF000000, False, "0000000300000001000000FF"),
    ],
)
def test_wal_file_names_match_postgresql(
    timeline: int, lsn: int, previous: bool, name: str
) -> None:
    assert wal_file_name(timeline, lsn, SEG, previous=previous) == name


def test_system_identifier_read_in_either_byte_order() -> None:
    sysid = 7311939986022460543
    little = struct.pack("<QI", sysid, 1300) + bytes(100)
    big = struct.pack(">QI", sysid, 1300) + bytes(100)
    assert system_identifier(little) == system_identifier(big) == str(sysid)
