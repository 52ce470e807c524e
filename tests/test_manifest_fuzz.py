"""A fuzzing pass over manifests read from the repository: whatever a manifest holds, the tool
answers with one of its own errors (a clear refusal), never a crash, and writes nothing."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backup_engine.errors import BackupEngineError
from backup_engine.expire import plan_expire
from backup_engine.media.manifest import MEDIA_SNAPSHOTS, MediaSnapshotManifest
from backup_engine.media.restore import restore_media
from backup_engine.postgres.manifest import BaseBackupManifest, manifest_key
from backup_engine.postgres.restore import Recovery, restore_base_backup
from backup_engine.retention import RetentionPolicy
from backup_engine.storage import LocalStorage
from tests.test_manifest import genuine, sample_manifest

values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=30)
    | st.floats(allow_nan=True),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)  # fmt: skip


def _mutated(data: dict[str, Any], draw: st.DrawFn) -> dict[str, Any]:
    mutated = dict(data)
    for _ in range(draw(st.integers(1, 4))):
        field = draw(st.sampled_from([*sorted(mutated), "extra_field"]))
        if draw(st.booleans()):
            mutated[field] = draw(values)
        else:
            mutated.pop(field, None)
    return mutated


BASE = json.loads(genuine(sample_manifest()).to_json())
MEDIA: dict[str, Any] = {
    "kind": "media-snapshot", "format_version": 1, "backup_id": "20261125T020000Z",
    "start_time": "2026-11-25T02:00:00Z", "stop_time": "2026-11-25T02:00:01Z",
    "source": "/srv/uploads", "compression": "zstd", "files": [], "new_objects": 0,
    "new_bytes": 0, "tool_version": "0", "extra": {},
    "entries": [{"path": "a", "type": "file", "mode": 420, "mtime_ns": 0, "size": 1,
                 "sha256": "ab" * 32}],
}  # fmt: skip


@st.composite
def manifests(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["base", "media", "media-entry"]))
    if kind == "base":
        return kind, json.dumps(_mutated(BASE, draw)).encode()
    data = dict(MEDIA)
    if kind == "media-entry":
        data["entries"] = [_mutated(MEDIA["entries"][0], draw)]
    else:
        data = _mutated(data, draw)
    return kind, json.dumps(data).encode()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=manifests())
def test_a_mangled_manifest_is_refused_never_a_crash(case: tuple[str, bytes]) -> None:
    kind, data = case
    root = Path(tempfile.mkdtemp(prefix="manifest-fuzz-"))
    try:
        repo = LocalStorage(root / "repo")
        (root / "repo").mkdir()
        if kind == "base":
            repo.put_bytes(manifest_key("20261125T020000Z"), data)
            repo.put_bytes("postgres/base/20261125T020000Z/base.tar.zst", b"x")
            calls: tuple[Callable[[], object], ...] = (
                lambda: BaseBackupManifest.from_json(data, where="m"),
                lambda: restore_base_backup(repo, "latest", root / "t", recovery=Recovery("x")),
                lambda: plan_expire(repo, RetentionPolicy(), sample_manifest().stop_time),
            )
        else:
            repo.put_bytes(MEDIA_SNAPSHOTS.manifest_key("20261125T020000Z"), data)
            calls = (
                lambda: MediaSnapshotManifest.from_json(data, where="m"),
                lambda: restore_media(repo, "latest", root / "t"),
                lambda: plan_expire(repo, RetentionPolicy(), sample_manifest().stop_time),
            )
        for call in calls:
            _only_our_errors(call)
        assert not (root / "t").exists() or not any((root / "t").iterdir())
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _only_our_errors(call: Any) -> None:
    with contextlib.suppress(BackupEngineError):
        call()
