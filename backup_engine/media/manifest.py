"""A media snapshot: every path under the backed-up directory, with the object holding it.

Objects are content-addressed (`media/objects/<sha256[:2]>/<sha256>.zst`) and shared by all
snapshots: a file is stored once however many snapshots and paths refer to it. A snapshot's
`snapshot.json` is written last; objects are deleted (by expire) only when no retained snapshot
refers to them.
"""

from __future__ import annotations

import re
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


ENTRY_TYPES = ("file", "dir", "symlink", "hardlink")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class MediaEntry:
    path: str  # relative, '/'-separated
    type: str  # "file", "dir", "symlink" or "hardlink"
    mode: int
    mtime_ns: int
    size: int = 0
    sha256: str | None = None  # files: of the content (the object's name)
    target: str | None = None  # symlinks: what they point to; hard links: the first path

    def problem(self) -> str | None:
        """Why this entry (read from the repository) cannot be trusted, or None."""
        if not isinstance(self.path, str) or not self.path or "\0" in self.path:
            return "an empty path"
        parts = self.path.split("/")
        if self.path.startswith("/") or ".." in parts or "" in parts or "." in parts:
            return f"path {self.path!r} is not inside the snapshot"
        if self.type not in ENTRY_TYPES:
            return f"{self.path!r} has unknown type {self.type!r}"
        if not isinstance(self.mode, int) or not 0 <= self.mode <= 0o7777:
            return f"{self.path!r} has mode {self.mode!r}"
        if not isinstance(self.mtime_ns, int) or not isinstance(self.size, int) or self.size < 0:
            return f"{self.path!r} has a bad time or size"
        if self.type == "file" and not (
            isinstance(self.sha256, str) and _SHA256.match(self.sha256)
        ):
            return f"{self.path!r} has no valid sha256"
        if self.type in ("symlink", "hardlink") and not (
            isinstance(self.target, str) and self.target
        ):
            return f"{self.path!r} is a {self.type} without a target"
        if self.type == "hardlink" and self.target is not None:
            target = self.target.split("/")
            if self.target.startswith("/") or ".." in target or "" in target:
                return f"{self.path!r} is a hard link to {self.target!r}, outside the snapshot"
        return None


@dataclass(frozen=True)
class SkippedEntry:
    path: str
    reason: str  # "fifo", "socket", "device", "vanished while read", "changed while read"


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
    root_mode: int | None = None  # the backed-up directory itself
    root_mtime_ns: int | None = None
    skipped: tuple[SkippedEntry, ...] = ()  # what was not backed up, and why

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
        data["skipped"] = tuple(SkippedEntry(**e) for e in data.get("skipped", ()))
        seen: set[str] = set()
        for entry in data["entries"]:
            problem = entry.problem()
            if problem is None and entry.path in seen:
                problem = f"{entry.path!r} appears twice"
            if problem is not None:
                raise ValueError(f"entry {problem}")
            seen.add(entry.path)
        root_mode = data.get("root_mode")
        if root_mode is not None and not (isinstance(root_mode, int) and 0 <= root_mode <= 0o7777):
            raise ValueError(f"root_mode {root_mode!r}")
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
