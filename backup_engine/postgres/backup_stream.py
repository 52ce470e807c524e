"""A base backup's COPY stream (replication.py) into storage: one object per archive.

Each archive (base.tar, then one <oid>.tar per tablespace) streams into its own object as it
arrives; nothing is staged. With `server` compression the server sends zstd and the bytes are
stored as they come: the network carries compressed data and this process only hashes and
uploads. Otherwise the plain tar is compressed here, as before. The uncompressed size of each
archive (what a restore may write at most) is counted here, or, for a server-compressed one,
taken from the server's own progress report at the end of the archive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from backup_engine.codecs import Codec, Compressor
from backup_engine.errors import CommandFailed
from backup_engine.manifests import StoredFile
from backup_engine.postgres.backup_facts import MANIFEST_MEMBER
from backup_engine.postgres.manifest import BASE_TAR
from backup_engine.postgres.replication import (
    BackupRequest,
    Ended,
    ManifestFollows,
    NewArchive,
    Progress,
    ReplicationConnection,
    Started,
    TablespaceRow,
)
from backup_engine.progress import ProgressTask
from backup_engine.storage import ObjectWriter, Storage

_ARCHIVE = re.compile(r"^(base|[1-9][0-9]{0,9})\.tar$")
BUFFER = 1 << 20  # plain tar gathered this much before each compress call


@dataclass
class Streamed:
    """What the stream gave: the stored archives (base first), the manifest, and positions."""

    archives: list[StoredFile] = field(default_factory=list)
    locations: dict[int, str] = field(default_factory=dict)  # tablespace oid -> its path
    manifest: StoredFile | None = None
    start: Started | None = None
    end: Ended | None = None
    system_identifier: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def files(self) -> tuple[StoredFile, ...]:
        base = [a for a in self.archives if a.name.startswith(BASE_TAR)]
        others = [a for a in self.archives if not a.name.startswith(BASE_TAR)]
        assert self.manifest is not None
        return (*base, *others, self.manifest)


class _Archive:
    """One object being written: compressed here (client) or stored as sent (server)."""

    def __init__(self, out: ObjectWriter, name: str, compressor: Compressor | None) -> None:
        self.out, self.name, self.compressor = out, name, compressor
        self.raw = 0
        self._pending = bytearray()

    def write(self, data: memoryview) -> None:
        if self.compressor is None:
            self.out.write(data)  # type: ignore[arg-type]  # hashed and copied by the writer
            return
        self.raw += len(data)
        self._pending += data
        if len(self._pending) >= BUFFER:
            self.out.write(self.compressor.compress(self._pending))
            self._pending.clear()

    def commit(self, raw: int | None) -> StoredFile:
        if self.compressor is not None:
            self.out.write(self.compressor.compress(self._pending) + self.compressor.flush())
            raw = self.raw
        if raw is None:
            raise CommandFailed(f"the server did not report the size of {self.name}")
        stored = self.out.commit()
        return StoredFile(self.name, stored.key, stored.size, stored.sha256, raw)


def stream_backup(
    storage: Storage,
    codec: Codec,
    conn: ReplicationConnection,
    request: BackupRequest,
    prefix: str,
    task: ProgressTask,
) -> Streamed:
    """Run `request` on `conn` and store every archive under `prefix`. On failure, what was
    being written is discarded; archives already committed are the caller's to remove."""
    server = bool(request.compression)
    suffix = f".{'zst' if request.compression == 'zstd' else request.compression}"
    result = Streamed()
    current: _Archive | None = None
    manifest: ObjectWriter | None = None
    done = archive_start = 0  # the server's uncompressed count, and where the archive began
    try:
        for item in conn.base_backup(request):
            if isinstance(item, memoryview):
                if manifest is not None:
                    manifest.write(item)  # type: ignore[arg-type]
                elif current is not None:
                    current.write(item)
                    if not server:
                        task.advance(len(item))
                else:
                    raise CommandFailed("BASE_BACKUP sent data before naming an archive")
            elif isinstance(item, Progress):
                if server:
                    task.advance(max(0, item.done - done))
                done = item.done
            elif isinstance(item, NewArchive | ManifestFollows):
                if current is not None:  # a tar is never empty: no count means no report
                    result.archives.append(current.commit(done - archive_start or None))
                    current = None
                archive_start = done
                if isinstance(item, ManifestFollows):
                    manifest = storage.writer(f"{prefix}{MANIFEST_MEMBER}", if_absent=True)
                    continue
                plain = item.name.removesuffix(suffix) if server else item.name
                match = _ARCHIVE.match(plain)
                if not match or (server and plain == item.name):
                    raise CommandFailed(f"BASE_BACKUP sent an archive named {item.name!r}")
                if match.group(1) != "base":
                    result.locations[int(match.group(1))] = item.location
                name = plain + codec.suffix
                out = storage.writer(f"{prefix}{name}", if_absent=True)
                current = _Archive(out, name, None if server else codec.compressor())
            elif isinstance(item, Started):
                result.start = item
            elif isinstance(item, Ended):
                result.end = item
            elif isinstance(item, TablespaceRow) and item.oid is not None:
                result.locations.setdefault(item.oid, item.location or "")
        if current is not None or manifest is None or result.start is None or result.end is None:
            raise CommandFailed("BASE_BACKUP ended before sending the whole backup")
        stored = manifest.commit()
        result.manifest = StoredFile(MANIFEST_MEMBER, stored.key, stored.size, stored.sha256)
    finally:
        for writer in (current.out if current else None, manifest):
            if writer is not None:
                writer.abort()
    return result
