"""Fingerprints of directory trees, to prove a media restore is byte-identical."""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TreeEntry:
    type: str
    mode: int
    mtime_ns: int | None  # files only: directories' times move when their contents do
    size: int
    sha256: str | None
    target: str | None


def tree_fingerprint(root: Path) -> dict[str, TreeEntry]:
    entries: dict[str, TreeEntry] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            path = Path(dirpath) / name
            st = path.lstat()
            rel = path.relative_to(root).as_posix()
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                entries[rel] = TreeEntry("symlink", mode, None, 0, None, os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                entries[rel] = TreeEntry("dir", mode, None, 0, None, None)
            else:
                digest = hashlib.sha256()
                with path.open("rb") as fh:
                    while chunk := fh.read(1 << 20):
                        digest.update(chunk)
                entries[rel] = TreeEntry(
                    "file", mode, st.st_mtime_ns, st.st_size, digest.hexdigest(), None
                )
    return entries
