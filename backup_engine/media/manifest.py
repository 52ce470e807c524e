"""A media snapshot: every path under the backed-up directory, with the object holding it.

Objects are content-addressed (`media/objects/<sha256[:2]>/<sha256>.zst`) and shared by all
snapshots: a file is stored once however many snapshots and paths refer to it. A snapshot's
`snapshot.json` is written last; objects are deleted (by expire) only when no retained snapshot
refers to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from backup_engine.codecs import get_codec
from backup_engine.manifests import ManifestMixin, StoredFile
from backup_engine.snapshots import SnapshotKind

KIND = "media-snapshot"
OBJECTS_PREFIX = "media/objects/"


def object_key(sha256: str, suffix: str) -> str:
    return f"{OBJECTS_PREFIX}{sha256[:2]}/{sha256}{suffix}"


@dataclass(frozen=True)
class MediaEntry:
    path: str  # relative, '/'-separated
    type: str  # "file", "dir" or "symlink"
    mode: int
    mtime_ns: int
    size: int = 0
    sha256: str | None = None  # files: of the content (the object's name)
    target: str | None = None  # symlinks: what they point to


@dataclass(frozen=True)
class MediaSnapshotManifest(ManifestMixin):
    KIND: ClassVar[str] = KIND

    backup_id: str
    start_time: datetime
    stop_time: datetime
    source: str  # the directory that was backed up
    compression: str
    entries: tuple[MediaEntry, ...]
    files: tuple[StoredFile, ...]  # empty: content lives in shared objects
    new_objects: int
    new_bytes: int  # stored bytes this snapshot added
    tool_version: str
    kind: str = KIND
    format_version: int = 1
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def file_count(self) -> int:
        return sum(1 for e in self.entries if e.type == "file")

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries if e.type == "file")

    def object_keys(self) -> set[str]:
        suffix = get_codec(self.compression).suffix
        return {object_key(e.sha256, suffix) for e in self.entries if e.sha256}

    @classmethod
    def _decode(cls, data: dict[str, Any]) -> dict[str, Any]:
        data["entries"] = tuple(MediaEntry(**e) for e in data["entries"])
        return data


def _parse(data: bytes, where: str) -> MediaSnapshotManifest:
    return MediaSnapshotManifest.from_json(data, where=where)


MEDIA_SNAPSHOTS: SnapshotKind[MediaSnapshotManifest] = SnapshotKind(
    prefix="media/snapshots/",
    manifest_name="snapshot.json",
    parse=_parse,
    what="media snapshot",
    take_command="backup-engine media backup --path DIR",
    list_command="backup-engine media list",
)
