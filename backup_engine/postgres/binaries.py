"""Finding PostgreSQL's programs (Debian keeps most of them off PATH)."""

from __future__ import annotations

import glob
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from backup_engine.errors import MissingBinary

_INSTALL_HINT = (
    "install the PostgreSQL server package (Debian/Ubuntu: apt-get install postgresql) "
    "or set [postgres] bindir / BACKUP_ENGINE_PG_BINDIR"
)


@dataclass(frozen=True)
class PgBinaries:
    bindir: Path

    def path(self, program: str) -> Path:
        candidate = self.bindir / program
        if not os.access(candidate, os.X_OK):
            raise MissingBinary(f"{program} not found in {self.bindir}", hint=_INSTALL_HINT)
        return candidate

    @property
    def major(self) -> int | None:
        """The major version, read from Debian's /usr/lib/postgresql/<major>/bin layout."""
        name = self.bindir.parent.name
        return int(name) if self.bindir.name == "bin" and name.isdigit() else None


def _debian_bindirs() -> list[Path]:
    found = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")]
    return sorted(
        (p for p in found if p.parent.name.isdigit()),
        key=lambda p: int(p.parent.name),
        reverse=True,
    )


def find_pg_binaries(configured: str | None = None, *, major: int | None = None) -> PgBinaries:
    """Prefer the configured dir, then the Debian dir of `major`, then the newest, then PATH.

    A backup must be taken and checked with tools of at least the server's major version, so
    callers that know the server's version pass it.
    """
    if configured:
        return PgBinaries(Path(configured))
    candidates = _debian_bindirs()
    if major is not None:
        candidates.sort(key=lambda p: p.parent.name != str(major))
    for bindir in candidates:
        if (bindir / "pg_ctl").exists():
            return PgBinaries(bindir)
    on_path = shutil.which("pg_ctl") or shutil.which("pg_basebackup")
    if on_path:
        return PgBinaries(Path(on_path).resolve().parent)
    raise MissingBinary("PostgreSQL programs (pg_ctl, pg_basebackup) not found", hint=_INSTALL_HINT)
