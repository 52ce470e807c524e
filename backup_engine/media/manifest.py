"""A media snapshot: every path under the backed-up directory, with the content it held.

Format 2 (written today): file content lives in blobs packed into shared packs (packs.py,
index.py); a file names its blobs (one, or one per 4 MiB chunk of a large file). The list of
entries is its own object, `entries.jsonl.zst` (JSON lines, compressed), whose size and sha256
`snapshot.json` records, so a million files never make a million-entry JSON document.
Format 1 (still read and restored): one object per file under `media/objects/`, entries inline.
`snapshot.json` is written last; shared content is deleted (by expire) only when no kept
snapshot refers to it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from backup_engine.codecs import get_codec
from backup_engine.manifests import ManifestMixin, StoredFile
from backup_engine.media.packs import chunks_of
from backup_engine.snapshots import SnapshotKind

KIND = "media-snapshot"
OBJECTS_PREFIX = "media/objects/"


def object_key(sha256: str, suffix: str) -> str:
    return f"{OBJECTS_PREFIX}{sha256[:2]}/{sha256}{suffix}"


ENTRY_TYPES = ("file", "dir", "symlink", "hardlink")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)  # slots: a snapshot of a million files holds many
class MediaEntry:
    path: str  # relative, '/'-separated
    type: str  # "file", "dir", "symlink" or "hardlink"
    mode: int
    mtime_ns: int
    size: int = 0
    sha256: str | None = None  # files: of the content (the object's name)
    target: str | None = None  # symlinks: what they point to; hard links: the first path
    chunks: tuple[str, ...] | None = None  # format 2, files of more than one blob: their ids
    inode: int | None = None  # format 2: with size and mtime, says a file is unchanged

    def blobs(self) -> tuple[str, ...]:
        """Format 2: the blobs holding this file's content, in order."""
        if self.chunks is not None:
            return self.chunks
        return (self.sha256,) if self.sha256 and self.size else ()

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
        if self.chunks is not None and not (
            isinstance(self.chunks, tuple)
            and all(isinstance(c, str) and _SHA256.match(c) for c in self.chunks)
        ):
            return f"{self.path!r} has a bad chunk list"
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
    FORMAT_VERSION: ClassVar[int] = 2

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
    entries_object: StoredFile | None = None  # format 2: the entries, as JSON lines
    entry_count: int = 0  # format 2
    files_total: int = 0  # format 2
    bytes_total: int = 0  # format 2

    @property
    def packed(self) -> bool:
        return self.format_version >= 2

    @property
    def file_count(self) -> int:
        if self.packed:
            return self.files_total
        return sum(1 for e in self.entries if e.type == "file")

    @property
    def total_bytes(self) -> int:
        if self.packed:
            return self.bytes_total
        return sum(e.size for e in self.entries if e.type == "file")

    def object_keys(self) -> set[str]:
        """Format 1: the per-file objects this snapshot refers to."""
        suffix = get_codec(self.compression).suffix
        return {object_key(e.sha256, suffix) for e in self.entries if e.sha256}

    @classmethod
    def _decode(cls, data: dict[str, Any]) -> dict[str, Any]:
        data["entries"] = tuple(check_entries(decode_entry(e) for e in data["entries"]))
        data["skipped"] = tuple(SkippedEntry(**e) for e in data.get("skipped", ()))
        if data.get("entries_object") is not None:
            data["entries_object"] = StoredFile(**data["entries_object"])
        root_mode = data.get("root_mode")
        if root_mode is not None and not (isinstance(root_mode, int) and 0 <= root_mode <= 0o7777):
            raise ValueError(f"root_mode {root_mode!r}")
        return data


_ENTRY_FIELDS = frozenset(MediaEntry.__slots__)


def decode_entry(item: Any) -> MediaEntry:
    if not isinstance(item, dict):
        raise ValueError("an entry is not an object")
    if unknown := item.keys() - _ENTRY_FIELDS:
        raise ValueError(f"an entry has unknown fields: {', '.join(sorted(map(str, unknown)))}")
    if isinstance(item.get("chunks"), list):
        item = {**item, "chunks": tuple(item["chunks"])}
    return MediaEntry(**item)


class _WalkOrder:
    """Finds a path listed twice in a packed list without a set of every path. Our walk lists
    each directory's entries together, and the directories depth first in sorted order, so
    their parents, as tuples of components, strictly increase from group to group: a path can
    only repeat inside the group being read. Memory: the largest directory, not the tree."""

    def __init__(self) -> None:
        self.parent: tuple[str, ...] | None = None
        self.names: set[str] = set()

    def problem(self, path: str) -> str | None:
        *parent, name = path.split("/")
        group = tuple(parent)
        if group != self.parent:
            if self.parent is not None and group < self.parent:
                return f"{path!r} is listed out of the walk's order"
            self.parent, self.names = group, set()
        if name in self.names:
            return f"{path!r} appears twice"
        self.names.add(name)
        return None


def check_entries(entries: Iterable[MediaEntry], *, packed: bool = False) -> Iterator[MediaEntry]:
    """Each entry trusted only once it makes sense on its own, and no path twice."""
    order = _WalkOrder() if packed else None
    seen: set[str] = set()  # a format-1 list: in memory anyway, in any order
    for entry in entries:
        problem = entry.problem()
        blobs = len(entry.blobs())
        if problem is None and packed and entry.type == "file" and blobs != chunks_of(entry.size):
            problem = f"{entry.path!r} has {blobs} blobs for {entry.size} bytes"
        if problem is None and order is not None:
            problem = order.problem(entry.path)
        elif problem is None and entry.path in seen:
            problem = f"{entry.path!r} appears twice"
        if problem is not None:
            raise ValueError(f"entry {problem}")
        if order is None:
            seen.add(entry.path)
        yield entry


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
