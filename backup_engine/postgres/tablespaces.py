"""Where a restore puts each tablespace, checked before anything is written.

A backup records each tablespace's oid, name and original location; all three come from the
repository, so they are untrusted. The operator may move them: `--tablespace-map NAME_OR_OID=DIR`
(pgBackRest's --tablespace-map, Barman's --tablespace) and `--tablespace-map-all DIR` (each under
DIR/<name or oid>). Every destination must be absolute, normalised, not a symlink, outside the
data directory and every other destination, and not a system directory; a non-empty one is
refused unless --force moves it aside (a running server's never: live.py).

The data directory's `pg_tblspc/<oid>` links are made here, to those destinations: a link in
base.tar is taken for the oid it names, never for where it points, and a link for a tablespace
the backup does not list is refused.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from backup_engine.errors import CorruptObject, UsageError
from backup_engine.postgres.live import live_server_near
from backup_engine.postgres.manifest import BaseBackupManifest, Tablespace

LINK_DIR = "pg_tblspc"
# Where no database's files belong; a tablespace location equal to, or under, one of these is
# refused (a forged location must not aim a restore running as root at the system).
SYSTEM_DIRS = tuple(
    Path(p)
    for p in (
        "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc",
        "/run", "/sbin", "/sys", "/usr",
    )
)  # fmt: skip
_LINK = re.compile(rf"^{LINK_DIR}/([0-9]+)/?$")
HINT = "move it with --tablespace-map NAME=DIR or --tablespace-map-all DIR"


@dataclass(frozen=True)
class TablespaceMapping:
    """The operator's relocations: by name or oid, or all under one directory."""

    mapping: Mapping[str, Path] = field(default_factory=dict)
    all_under: Path | None = None

    @classmethod
    def parse(cls, pairs: Sequence[str], all_under: Path | None = None) -> TablespaceMapping:
        mapping: dict[str, Path] = {}
        for pair in pairs:
            key, equals, directory = pair.partition("=")
            if not equals or not key or not directory:
                raise UsageError(
                    f"--tablespace-map {pair!r}", hint="write it as NAME_OR_OID=/new/directory"
                )
            if key in mapping:
                raise UsageError(f"--tablespace-map names {key!r} twice")
            mapping[key] = Path(directory)
        return cls(mapping, all_under)


def _refuse(space: Tablespace, where: Path | str, why: str, *, forged: bool) -> Exception:
    what = f"tablespace {space.name or space.oid} (oid {space.oid}) at {where} {why}"
    if forged:  # the location came from the repository, unmapped
        return CorruptObject(f"the backup records {what}; refusing to restore there", hint=HINT)
    return UsageError(f"{what}", hint=HINT)


def plan_tablespaces(
    manifest: BaseBackupManifest, mapping: TablespaceMapping, pgdata: Path
) -> dict[int, Path]:
    """oid -> the directory each tablespace is restored into; refused as a whole, before any
    write, when one destination is unsafe or a mapping names no tablespace of the backup."""
    spaces = manifest.tablespaces
    known = {str(t.oid) for t in spaces} | {t.name for t in spaces if t.name}
    unknown = sorted(set(mapping.mapping) - known)
    if unknown:
        listed = ", ".join(f"{t.name} ({t.oid})" for t in spaces) or "none"
        raise UsageError(
            f"--tablespace-map names {', '.join(unknown)}, not a tablespace of backup "
            f"{manifest.backup_id}",
            hint=f"its tablespaces: {listed}",
        )
    pgdata = Path(os.path.abspath(pgdata))
    planned: dict[int, Path] = {}
    for space in spaces:
        chosen = mapping.mapping.get(str(space.oid)) or mapping.mapping.get(space.name)
        forged = False
        if chosen is None and mapping.all_under is not None:
            chosen = mapping.all_under / (space.name if _plain_name(space.name) else str(space.oid))
        if chosen is None:
            chosen, forged = Path(space.location), True
        planned[space.oid] = _checked(space, chosen, pgdata, forged=forged)
    _check_apart(spaces, planned, pgdata)
    return planned


def _plain_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\0" not in name


def _checked(space: Tablespace, chosen: Path, pgdata: Path, *, forged: bool) -> Path:
    text = str(chosen)
    if not chosen.is_absolute():
        raise _refuse(space, text, "is not an absolute path", forged=forged)
    if "\0" in text or os.path.normpath(text) != text.rstrip("/") or ".." in chosen.parts:
        raise _refuse(space, text, "is not a normalised path", forged=forged)
    if chosen == Path("/") or any(chosen == s or chosen.is_relative_to(s) for s in SYSTEM_DIRS):
        raise _refuse(space, text, "is a system directory", forged=forged)
    if chosen.is_symlink():
        raise _refuse(space, text, "is a symbolic link", forged=forged)
    if chosen.exists() and not chosen.is_dir():
        raise _refuse(space, text, "exists and is not a directory", forged=forged)
    reason = live_server_near(chosen)
    if reason is not None:  # the source's own tablespace, when restoring on its host
        raise _refuse(space, text, f"is in use: {reason}", forged=False)
    real = Path(os.path.realpath(chosen))
    data = Path(os.path.realpath(pgdata))
    for left, right in ((chosen, pgdata), (real, data)):
        if left == right or left.is_relative_to(right) or right.is_relative_to(left):
            raise _refuse(space, text, f"overlaps the data directory {pgdata}", forged=forged)
    return chosen


def _check_apart(spaces: Sequence[Tablespace], planned: Mapping[int, Path], pgdata: Path) -> None:
    by_oid = {t.oid: t for t in spaces}
    items = sorted(planned.items())
    for index, (oid, path) in enumerate(items):
        real = Path(os.path.realpath(path))
        for other_oid, other in items[index + 1 :]:
            other_real = Path(os.path.realpath(other))
            if (
                real == other_real
                or real.is_relative_to(other_real)
                or other_real.is_relative_to(real)
            ):
                space = by_oid[oid]
                raise _refuse(space, path, f"overlaps tablespace {other_oid}'s {other}",
                              forged=path == Path(space.location))  # fmt: skip


class TablespaceLinks:
    """The link policy of a data directory's archive: `pg_tblspc/<oid>` links go to the planned
    directories (whatever the member says), every other symlink is refused."""

    def __init__(self, planned: Mapping[int, Path], where: str) -> None:
        self.planned, self.where = planned, where
        self.made: set[int] = set()

    def target(self, name: str, linkname: str) -> str:
        match = _LINK.match(name)
        if match is None:
            raise CorruptObject(
                f"{self.where} holds a symbolic link {name!r} outside {LINK_DIR}; "
                "refusing to restore it"
            )
        oid = int(match.group(1))
        if oid not in self.planned or oid in self.made:
            raise CorruptObject(
                f"{self.where} links {name!r} for a tablespace its manifest does not list"
            )
        self.made.add(oid)
        return str(self.planned[oid])

    def missing(self) -> dict[str, str]:
        """Links the archive did not hold: made after it, so every tablespace is reachable."""
        return {f"{LINK_DIR}/{oid}": str(p) for oid, p in self.planned.items()
                if oid not in self.made}  # fmt: skip


class NoLinks:
    """A tablespace's own archive holds no symbolic link."""

    def __init__(self, where: str) -> None:
        self.where = where

    def target(self, name: str, linkname: str) -> str:
        raise CorruptObject(f"{self.where} holds a symbolic link {name!r}; refusing to restore it")

    def missing(self) -> dict[str, str]:
        return {}
