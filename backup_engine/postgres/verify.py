"""`pg verify`: prove a stored base backup restores, without touching any server.

An incremental backup is verified with every backup of its chain.
1. Every object other than the base tar is re-read and checked against its recorded sha256.
2. The base tar and each tablespace's archive are restored into a scratch directory (each
   checked against its sha256 as it streams) and
   pg_verifybackup checks every file against PostgreSQL's own backup_manifest, and parses the
   WAL the backup needs. The scratch directory is removed afterwards.
With `hashes_only`, step 2 becomes a plain sha256 check of the base tar.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from backup_engine.integrity import Expected, verify_object
from backup_engine.postgres.catalog import resolve_backup
from backup_engine.postgres.chain import backup_chain
from backup_engine.postgres.manifest import BASE_TAR, BaseBackupManifest, StoredFile
from backup_engine.postgres.restore import restore_base_backup
from backup_engine.postgres.tablespaces import TablespaceMapping
from backup_engine.progress import Progress
from backup_engine.storage import Storage


@dataclass(frozen=True)
class VerifyResult:
    backup_id: str
    objects_checked: tuple[str, ...]
    pg_verifybackup: bool
    seconds: float


def verify_base_backup(
    storage: Storage,
    ref: str,
    *,
    hashes_only: bool = False,
    scratch_dir: Path | None = None,
    bindir: str | None = None,
    progress: Progress | None = None,
) -> VerifyResult:
    started = time.monotonic()
    progress = progress or Progress()
    manifest = resolve_backup(storage, ref)
    chain = backup_chain(storage, manifest)  # an incremental is checked with its parents
    checked: list[str] = []
    restored = {s.key for link in chain for s in _archives(link)}
    for stored in (stored for link in chain for stored in link.files):
        if stored.key in restored and not hashes_only:
            continue  # checked while it is restored below
        verify_object(storage, Expected.of(stored), progress)
        checked.append(stored.key)
    if not hashes_only:
        scratch = Path(tempfile.mkdtemp(prefix=f"verify-{manifest.backup_id}-", dir=scratch_dir))
        try:
            restore_base_backup(
                storage,
                manifest.backup_id,
                scratch / "pgdata",
                recovery=None,  # files only: checked, never started
                verify=True,
                bindir=bindir,
                progress=progress,
                tablespaces=TablespaceMapping(all_under=scratch / "tablespaces"),
            )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        checked.extend(s.key for link in chain for s in link.files if s.key in restored)
    return VerifyResult(
        backup_id=manifest.backup_id,
        objects_checked=tuple(checked),
        pg_verifybackup=not hashes_only,
        seconds=time.monotonic() - started,
    )


def _archives(manifest: BaseBackupManifest) -> list[StoredFile]:
    """The objects a trial restore reads (and checks as it streams): base.tar, tablespaces."""
    spaces = {t.archive for t in manifest.tablespaces}
    return [s for s in manifest.files if s.name.startswith(BASE_TAR) or s.name in spaces]
