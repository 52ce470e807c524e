"""Every reader of JSON from the repository, fed what a vandal with bucket access could write:
nesting far past the interpreter's stack, values of the wrong type, bytes that are not text,
documents past the size limit. Each answers the way its callers expect (a CorruptObject, an
"unreadable" mark, a pin kept as unreadable, a lock taken as someone's), never a crash."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import zstandard
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from backup_engine.drill.history import _past_run
from backup_engine.errors import CorruptObject, UsageError
from backup_engine.jsonsafe import loads
from backup_engine.locks import _read as read_lock
from backup_engine.locks import lock_key
from backup_engine.media.index import decode_index
from backup_engine.media.manifest import MediaSnapshotManifest
from backup_engine.pins import read_pins
from backup_engine.postgres.manifest import BaseBackupManifest
from backup_engine.postgres.restore_points import read_restore_point
from backup_engine.redis.manifest import RedisBackupManifest
from backup_engine.storage import LocalStorage
from backup_engine.storage.local import _metadata

values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=20)
    | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=8,
)  # fmt: skip
nested = st.builds(
    lambda opener, depth, tail: (opener * depth + tail).encode(),
    st.sampled_from(["[", '{"a":', '{"kind":"base-backup","files":[', "[{"]),
    st.integers(1, 120_000),
    st.sampled_from(["", "1", "]", "}"]),
)
documents = st.one_of(
    nested,
    values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=64),
    st.dictionaries(st.sampled_from(["kind", "format_version", "files", "backup_id", "name",
                                     "lsn", "time", "timeline", "reason", "host", "pid"]),
                    values, max_size=6).map(lambda d: json.dumps(d).encode()),
)  # fmt: skip


def _only_corrupt(read: Any, data: bytes) -> None:
    with contextlib.suppress(CorruptObject):
        read(data)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=documents)
@example(data=b"[" * 100_000)  # the issue's: RecursionError, exit 70, for every catalog command
@example(data=b'{"kind": "base-backup", "files": ' + b"[" * 100_000)
def test_every_manifest_kind_refuses_as_corrupt(data: bytes) -> None:
    for kind in (BaseBackupManifest, RedisBackupManifest, MediaSnapshotManifest):
        _only_corrupt(lambda d, k=kind: k.from_json(d, where="x"), data)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(data=documents)
@example(data=b"[" * 100_000)
def test_pins_locks_restore_points_and_sidecars(data: bytes, tmp_path: Path) -> None:
    repo = LocalStorage(tmp_path / "repo")
    repo.put_bytes("pins/postgres/20261125T020000Z.json", data)
    assert set(read_pins(repo, "postgres")) == {"20261125T020000Z"}  # a pin, readable or not
    repo.put_bytes(lock_key("backup-postgres"), data)
    held = read_lock(repo, lock_key("backup-postgres"))
    assert isinstance(held, dict)  # damaged or forged: someone's lock all the same
    repo.put_bytes("postgres/restore-points/p.json", data)
    try:
        read_restore_point(repo, "p")
    except (CorruptObject, UsageError) as exc:
        assert not isinstance(exc, UsageError) or "not recorded" in exc.message
    _only_corrupt(lambda d: _metadata(d, tmp_path / "sidecar"), data)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=documents)
@example(data=b"[" * 100_000)
@example(data=b"{" + b'"a":' * 100_000)
def test_media_index_and_drill_history(data: bytes) -> None:
    packed = zstandard.ZstdCompressor().compress(data + b"\n")
    with contextlib.suppress(ValueError, CorruptObject):
        decode_index(packed)
    assert _past_run("somewhere", data) is None or data.startswith(b"{")


def test_sizes_past_the_limit_are_refused_before_parsing() -> None:
    try:
        loads(b'"' + b"x" * 2000 + b'"', where="big", limit=1000)
    except CorruptObject as exc:
        assert "more than any record of its kind" in exc.message
    else:
        raise AssertionError("a document past the limit was parsed")
    try:
        _metadata(b"{" + b'"a":"b",' * 200_000 + b'"c":"d"}', Path("sidecar"))
    except CorruptObject as exc:
        assert "bytes" in exc.message
    else:
        raise AssertionError("a 1.6 MB sidecar was accepted")
