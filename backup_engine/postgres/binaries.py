"""Finding PostgreSQL's programs (Debian keeps most of them off PATH)."""

from __future__ import annotations

import glob
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from backup_engine.errors import BackupEngineError, MissingBinary
from backup_engine.process import run

_INSTALL_HINT = (
    "install the PostgreSQL server package (Debian/Ubuntu: apt-get install postgresql) "
    "or set [postgres] bindir / BACKUP_ENGINE_PG_BINDIR"
)

# Debian's postgresql-client-<major> holds these; the rest come with postgresql-<major>.
_CLIENT_PROGRAMS = {"pg_basebackup", "pg_verifybackup", "pg_combinebackup", "pg_receivewal",
                    "pg_dump", "pg_restore", "psql", "pg_isready", "pg_recvlogical"}  # fmt: skip


@dataclass(frozen=True)
class PgBinaries:
    bindir: Path

    def path(self, program: str) -> Path:
        candidate = self.bindir / program
        if not os.access(candidate, os.X_OK):
            hint = _INSTALL_HINT
            major = max(self.major or 0, 17 if program == "pg_combinebackup" else 0)
            if major:  # Debian's layout, or a program new in 17: the package is known
                package = "postgresql-client" if program in _CLIENT_PROGRAMS else "postgresql"
                hint = (f"install {package}-{major} (Debian/Ubuntu), or set "
                        "[postgres] bindir / BACKUP_ENGINE_PG_BINDIR")  # fmt: skip
            raise MissingBinary(f"{program} not found in {self.bindir}", hint=hint)
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
    callers that know the server's version pass it: older tools are refused in one line that
    names the package to install (pg_basebackup 15 cannot stream a PostgreSQL 17 server, and
    pg_verifybackup 15 cannot read a PostgreSQL 17 backup's manifest).
    """
    found = _find(configured, major)
    if major is not None and (have := _major_of(found.bindir)) is not None and have < major:
        raise MissingBinary(
            f"PostgreSQL {major} needs programs of version {major} or newer; {found.bindir} "
            f"holds version {have}",
            hint=f"install postgresql-client-{major} (Debian/Ubuntu; apt.postgresql.org has "
            "versions your release lacks) or set [postgres] bindir / BACKUP_ENGINE_PG_BINDIR "
            f"to PostgreSQL {major}'s bin directory",
        )
    return found


def _major_of(bindir: Path) -> int | None:
    """The programs' major version: from Debian's layout, or else from `--version`."""
    layout = PgBinaries(bindir).major
    if layout is not None:
        return layout
    for program in ("pg_basebackup", "pg_ctl", "postgres"):
        if os.access(bindir / program, os.X_OK):
            try:
                done = run([bindir / program, "--version"], timeout=10, check=False)
            except BackupEngineError:  # it does not run: the caller's own call will say so
                return None
            version = re.search(r"\)\s+(\d+)", done.stdout)
            return int(version.group(1)) if version else None
    return None


def _find(configured: str | None, major: int | None) -> PgBinaries:
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
