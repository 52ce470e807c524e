"""Extracting a tar stream into a target directory, never outside it.

tarfile only parses: every entry is written by `SafeTree`, which walks from the target's root
with O_NOFOLLOW and creates with O_EXCL, so no member (absolute, `..`, through a symlink made by
an earlier member, a symlink or hard link replacing an earlier name) can create, write, chmod or
utime anything outside the target. Devices, FIFOs and other special members are refused;
setuid/setgid bits are dropped. What is extracted is bounded by `limit` (the uncompressed size
the manifest recorded), so a forged stream cannot fill the disk past what the backup said.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

from backup_engine.errors import CorruptObject
from backup_engine.safefs import Attributes, SafeTree
from backup_engine.streams import Readable


@dataclass(frozen=True)
class ExtractStats:
    files: int
    bytes: int


class _Limited:
    """Refuses to read past `limit` bytes of the uncompressed stream."""

    def __init__(self, raw: Readable, limit: int | None, where: str) -> None:
        self._raw, self._limit, self._where, self.read_bytes = raw, limit, where, 0

    def read(self, size: int = -1, /) -> bytes:
        data = self._raw.read(size)
        self.read_bytes += len(data)
        if self._limit is not None and self.read_bytes > self._limit:
            raise CorruptObject(
                f"{self._where} holds more than the {self._limit} bytes its manifest records"
            )
        return data


def _attributes(member: tarfile.TarInfo) -> Attributes:
    return Attributes(member.mode, int(member.mtime * 1_000_000_000), member.uid, member.gid)


def extract_stream(
    stream: Readable, target: Path, *, where: str, limit: int | None = None
) -> ExtractStats:
    """Extract an uncompressed tar stream into `target`, in one pass, member by member."""
    files = size = 0
    limited = _Limited(stream, limit, where)
    try:
        with (
            SafeTree(target, where) as tree,
            tarfile.open(fileobj=cast(IO[bytes], limited), mode="r|") as tar,
        ):
            for member in tar:
                if member.isreg():
                    # Straight from the tar stream, as tarfile's own extract does: its
                    # extractfile() adds two layers of buffering and halves the throughput.
                    data = cast(Readable, tar.fileobj)
                    data.seek(member.offset_data)  # type: ignore[attr-defined]
                    size += tree.write_file(member.name, data, member.size, _attributes(member))
                    files += 1
                elif member.isdir():
                    if member.name.strip("/") in ("", "."):
                        continue  # the target itself ("./" in archives made with `tar -C dir .`)
                    tree.mkdir(member.name, _attributes(member))
                elif member.issym():
                    tree.symlink(member.name, member.linkname, _attributes(member))
                elif member.islnk():
                    tree.hardlink(member.name, member.linkname)
                else:
                    raise CorruptObject(
                        f"{where} holds {member.name!r} of unexpected type {member.type!r}"
                    )
            tree.finish()
    except tarfile.TarError as exc:
        raise CorruptObject(f"{where} is not a readable tar stream: {exc}") from None
    return ExtractStats(files=files, bytes=size)
