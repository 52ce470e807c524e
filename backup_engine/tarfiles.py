"""Extracting a tar stream into a target directory, never outside it.

We parse the stream ourselves (one 512-byte header at a time, through tarfile's documented
`TarInfo.frombuf`, which checks each header's checksum) and write member data straight from the
read-ahead chunks into the files: tarfile's stream mode copies every byte through 10 KiB reads
and joins, which cost more than decompressing. Member data and headers are read in a second
thread (`ReadAhead`), so decompression and hashing overlap with file creation and writes.

Every entry is written by `SafeTree`, which walks from the target's root with O_NOFOLLOW and
creates with O_EXCL, so no member (absolute, `..`, through a symlink made by an earlier member, a
symlink or hard link replacing an earlier name) can create, write, chmod or utime anything outside
the target. Devices, FIFOs, sparse files and other special members are refused; setuid/setgid
bits are dropped; sizes, times and owners out of range are refused. What is extracted is bounded
by `limit` (the uncompressed size the manifest recorded), so a forged stream cannot fill the disk
past what the backup said. A stream that ends before its end-of-archive marker is refused.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from backup_engine.errors import CorruptObject
from backup_engine.safefs import Attributes, SafeTree
from backup_engine.streams import Chunks, Readable, ReadAhead

BLOCK = 512
MAX_EXTENDED = 1 << 20  # a pax or GNU long-name header; real ones hold a few names
MAX_ID = 1 << 32
MAX_MTIME = 1 << 33  # seconds; about the year 2242
REGULAR = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
EXTENDED = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
PAX_FIELDS = ("path", "linkpath", "size", "mtime", "uid", "gid")


@dataclass(frozen=True)
class ExtractStats:
    files: int
    bytes: int


@dataclass(frozen=True)
class Member:
    name: str
    type: bytes
    size: int
    linkname: str
    attributes: Attributes


class TarReader:
    """The members of an uncompressed tar stream, in order. A regular member's data is read
    with `read` before asking for the next member (what is left unread is skipped)."""

    def __init__(self, stream: Chunks, where: str, limit: int | None) -> None:
        self._stream, self._where, self._limit = stream, where, limit
        self._consumed = 0
        self._left = 0  # bytes of the current member's data not read yet
        self._padding = 0

    def _refuse(self, what: str) -> CorruptObject:
        return CorruptObject(f"{self._where} {what}")

    def _take(self, size: int) -> bytes | memoryview:
        data = self._stream.read(size)
        self._consumed += len(data)
        if self._limit is not None and self._consumed > self._limit:
            raise self._refuse(f"holds more than the {self._limit} bytes its manifest records")
        return data

    def _exact(self, size: int) -> bytes:
        parts, got = [], 0
        while got < size and (data := self._take(size - got)):
            parts.append(bytes(data))
            got += len(data)
        return b"".join(parts)

    def _skip(self, size: int) -> None:
        while size and (data := self._take(size)):
            size -= len(data)
        if size:
            raise self._refuse("ends inside a member")

    def read(self, size: int = -1, /) -> bytes | memoryview:
        """The current member's data (at most what its header recorded)."""
        if size < 0 or size > self._left:
            size = self._left
        data = self._take(size) if size else b""
        self._left -= len(data)
        return data

    def __iter__(self) -> Iterator[Member]:
        extended: dict[str, str] = {}
        shared: dict[str, str] = {}  # pax global headers: for every member that follows
        seen = False
        while True:
            self._skip(self._left + self._padding)
            self._left = self._padding = 0
            header = self._exact(BLOCK)
            if not header:
                raise self._refuse(
                    "ends without a tar end-of-archive marker"
                    if seen
                    else "is not a readable tar stream: it is empty"
                )
            if header == bytes(BLOCK):
                if not seen:
                    raise self._refuse("is not a readable tar stream: no member")
                return  # the end-of-archive marker; what follows is checked by the hash only
            try:
                info = tarfile.TarInfo.frombuf(header, "utf-8", "surrogateescape")
            except tarfile.HeaderError as exc:
                raise self._refuse(f"is not a readable tar stream: {exc}") from None
            seen = True
            if info.type in EXTENDED:
                self._extended(info, extended, shared)
                continue
            member = self._member(info, {**shared, **extended})
            extended = {}
            if member.type in REGULAR:
                self._left = member.size
                self._padding = -member.size % BLOCK
            yield member

    def _extended(
        self, info: tarfile.TarInfo, extended: dict[str, str], shared: dict[str, str]
    ) -> None:
        if not 0 <= info.size <= MAX_EXTENDED:
            raise self._refuse(f"holds an extended header of {info.size} bytes")
        data = self._exact(info.size)
        if len(data) != info.size:
            raise self._refuse("ends inside an extended header")
        self._skip(-info.size % BLOCK)
        if info.type == tarfile.GNUTYPE_LONGNAME:
            extended["path"] = _text(data.split(b"\0", 1)[0])
        elif info.type == tarfile.GNUTYPE_LONGLINK:
            extended["linkpath"] = _text(data.split(b"\0", 1)[0])
        else:
            records = self._pax(data)
            (shared if info.type == tarfile.XGLTYPE else extended).update(records)

    def _pax(self, data: bytes) -> dict[str, str]:
        """pax records, "LENGTH KEY=VALUE\\n" each; the fields we apply, and refusals."""
        records: dict[str, str] = {}
        pos = 0
        while pos < len(data):
            space = data.find(b" ", pos)
            try:
                length = int(data[pos:space]) if space > pos else 0
            except ValueError:
                length = 0
            record = data[space + 1 : pos + length]
            key, equals, value = record[:-1].partition(b"=")
            if pos + length > len(data) or not record.endswith(b"\n") or not equals:
                raise self._refuse("holds a malformed pax header")
            name = _text(key)
            if name.startswith("GNU.sparse"):
                raise self._refuse("holds a sparse file, which no backup of ours contains")
            if name in PAX_FIELDS:
                records[name] = _text(value)
            pos += length
        return records

    def _member(self, info: tarfile.TarInfo, pax: dict[str, str]) -> Member:
        name = pax.get("path", info.name)
        try:
            size = int(pax.get("size", info.size))
            mtime = float(pax.get("mtime", info.mtime))
            uid = int(pax.get("uid", info.uid))
            gid = int(pax.get("gid", info.gid))
        except ValueError:
            raise self._refuse(f"holds {name!r} with a malformed pax field") from None
        if not (size >= 0 and 0 <= uid < MAX_ID and 0 <= gid < MAX_ID and 0 <= mtime < MAX_MTIME):
            raise self._refuse(f"holds {name!r} with a size, owner or time out of range")
        attributes = Attributes(info.mode, int(mtime * 1_000_000_000), uid, gid)
        linkname = pax.get("linkpath", info.linkname)
        return Member(name, info.type, size, linkname, attributes)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


class Tally(Protocol):
    """Something that sees each regular file's content as it is written (checksums)."""

    def reading(self, content: Chunks) -> Chunks: ...

    def record(self, name: str, reader: Chunks) -> None: ...


class Links(Protocol):
    """Where symbolic links may point (PostgreSQL's tablespace links), decided by the caller."""

    def target(self, name: str, linkname: str) -> str:
        """What the link `name` is made to point to; raises to refuse it."""
        ...

    def missing(self) -> dict[str, str]:
        """Links to make once the archive is extracted: name -> target."""
        ...


def extract_stream(
    stream: Readable,
    target: Path,
    *,
    where: str,
    limit: int | None = None,
    tally: Tally | None = None,
    tally_prefix: str = "",
    links: Links | None = None,
    writer: Callable[[Path, str], SafeTree] = SafeTree,
) -> ExtractStats:
    """Extract an uncompressed tar stream into `target`, in one pass, member by member.
    `tally_prefix` goes before each name the tally records (a tablespace's files are listed
    under pg_tblspc/<oid>/ in PostgreSQL's manifest); `links` decides every symlink; `writer`
    makes the tree (a DeltaTree rewrites an existing directory in place)."""
    files = size = 0
    with ReadAhead(stream) as ahead, writer(target, where) as tree:
        tar = TarReader(ahead, where, limit)
        for member in tar:
            if member.type in REGULAR:
                content = tally.reading(tar) if tally else tar
                size += tree.write_file(member.name, content, member.size, member.attributes)
                if tally:
                    tally.record(tally_prefix + member.name, content)
                files += 1
            elif member.type == tarfile.DIRTYPE:
                if member.name.strip("/") in ("", "."):
                    continue  # the target itself ("./" in archives made with `tar -C dir .`)
                tree.mkdir(member.name, member.attributes)
            elif member.type == tarfile.SYMTYPE:
                pointed = links.target(member.name, member.linkname) if links else member.linkname
                tree.symlink(member.name.rstrip("/"), pointed, member.attributes)
            elif member.type == tarfile.LNKTYPE:
                tree.hardlink(member.name, member.linkname)
            else:
                raise CorruptObject(
                    f"{where} holds {member.name!r} of unexpected type {member.type!r}"
                )
        for name, pointed in (links.missing() if links else {}).items():
            tree.symlink(name, pointed)
        tree.finish()
    return ExtractStats(files=files, bytes=size)
