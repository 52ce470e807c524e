"""Extracting a tar stream safely: no member may land outside the target directory."""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from backup_engine.errors import CorruptObject
from backup_engine.streams import Readable

_ALLOWED = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE)


@dataclass(frozen=True)
class ExtractStats:
    files: int
    bytes: int


def _check_member(member: tarfile.TarInfo, target: Path, where: str) -> None:
    name = Path(member.name)
    if name.is_absolute() or ".." in name.parts:
        raise CorruptObject(f"{where} holds an unsafe path {member.name!r}; refusing to extract")
    if member.type not in _ALLOWED:
        raise CorruptObject(f"{where} holds {member.name!r} of unexpected type {member.type!r}")
    if member.issym() and not (target / name).parent.resolve().is_relative_to(target.resolve()):
        raise CorruptObject(f"{where} holds a symlink outside the target: {member.name!r}")


def extract_stream(stream: Readable, target: Path, *, where: str) -> ExtractStats:
    """Extract an uncompressed tar stream into `target`, in one pass, member by member."""
    files = size = 0
    # Python >= 3.12 filters extraction; "tar" keeps modes and symlinks (tablespaces) but still
    # refuses absolute or escaping paths. Older Pythons rely on _check_member alone.
    extra: dict[str, Any] = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}
    try:
        tar_stream = cast(IO[bytes], stream)
        with tarfile.open(fileobj=tar_stream, mode="r|", copybufsize=1 << 20) as tar:  # type: ignore[call-overload]
            for member in tar:
                _check_member(member, target, where)
                tar.extract(member, target, set_attrs=True, numeric_owner=True, **extra)
                if member.isfile():
                    files += 1
                    size += member.size
    except tarfile.TarError as exc:
        raise CorruptObject(f"{where} is not a readable tar stream: {exc}") from None
    return ExtractStats(files=files, bytes=size)
