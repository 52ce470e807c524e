"""Restoring an incremental backup: its chain unpacked in a staging directory, then combined
by pg_combinebackup into the target (or, for a delta restore, into staging and from there over
the cluster's own files where they differ)."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from backup_engine.errors import CommandFailed, UsageError, VerificationFailed
from backup_engine.postgres.delta_target import DeltaTarget
from backup_engine.postgres.manifest import BaseBackupManifest
from backup_engine.postgres.restore_files import restore_files
from backup_engine.postgres.tablespaces import NoLinks, TablespaceLinks
from backup_engine.process import run
from backup_engine.progress import Progress
from backup_engine.safefs import Attributes, SafeTree
from backup_engine.storage import Storage
from backup_engine.tarfiles import ExtractStats, Links


def check_staging(staging: Path, chain: Sequence[BaseBackupManifest]) -> None:
    """Refuse before anything is written when the chain cannot be unpacked in `staging`."""
    hint = "set [postgres] staging_dir to a directory with room for the chain"
    if not staging.is_dir() or not os.access(staging, os.W_OK | os.X_OK):
        raise UsageError(f"cannot unpack the backup chain in {staging}: not a writable directory",
                         hint=hint)  # fmt: skip
    needed = sum(f.raw_size or f.size for link in chain for f in link.files)
    free = shutil.disk_usage(staging).free
    if free < needed:
        raise UsageError(
            f"the chain of {len(chain)} backups needs {needed / 1e9:.1f} GB unpacked in "
            f"{staging}, which has {free / 1e9:.1f} GB free",
            hint=hint,
        )


def restore_chain(
    storage: Storage,
    chain: Sequence[BaseBackupManifest],
    pgdata: Path,
    pg_combinebackup: Path,
    staging: Path,
    progress: Progress,
    planned: Mapping[int, Path],
    delta: DeltaTarget | None = None,
) -> tuple[ExtractStats, dict[str, str]]:
    """Unpack every backup of the chain (each checked as it streams, each bounded by its own
    manifest, its tablespaces beside it), then let pg_combinebackup write the synthetic full
    backup into `pgdata` and each tablespace into its planned directory."""
    checked: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix=f".{pgdata.name}.chain-", dir=staging) as scratch:
        directories = []
        spaces: dict[int, Path] = {}
        for number, link in enumerate(chain):
            directory = Path(scratch) / f"{number:02d}"  # not the id: it comes from the bucket
            directory.mkdir(mode=0o700)
            spaces = {t.oid: Path(scratch) / f"{number:02d}-tablespaces" / str(t.oid)
                      for t in link.tablespaces}  # fmt: skip
            for where in spaces.values():
                where.mkdir(mode=0o700, parents=True)
            _, read = restore_files(storage, link, directory, spaces, progress, None)
            checked.update(read)
            directories.append(directory)
        output, places = pgdata, dict(planned)
        if delta is not None:  # combined in staging, then compared with what is there
            output = Path(scratch) / "combined"
            places = {oid: Path(scratch) / "combined-tablespaces" / str(oid) for oid in planned}
        # the newest backup's tablespaces, where its links point, go to their places
        moves = [f"--tablespace-mapping={spaces[oid]}={new}" for oid, new in places.items()]
        try:
            run([pg_combinebackup, *directories, "--output", output, *moves])
        except CommandFailed as exc:
            raise VerificationFailed(
                f"pg_combinebackup could not combine backup {chain[-1].backup_id} with its "
                f"{len(chain) - 1} parents: {exc.message}",
                hint="the chain is damaged or not one PostgreSQL wrote; restore a full backup",
            ) from None
        if delta is not None:
            named = f"backup {chain[-1].backup_id} combined"
            _copy_into(output, delta.tree(pgdata, named), TablespaceLinks(planned, named))
            for oid, directory in planned.items():
                _copy_into(places[oid], delta.tablespace_tree(directory, named), NoLinks(named))
    files = size = 0
    for root, _, names in os.walk(pgdata):
        for name in names:
            files += 1
            size += os.lstat(os.path.join(root, name)).st_size
    return ExtractStats(files, size), checked


def _copy_into(source: Path, tree: SafeTree, links: Links) -> None:
    """Every entry of the directory `source` written through `tree` (links decided by
    `links`), as an archive of it would be extracted."""
    with tree:
        for root, dirs, files in os.walk(source):
            relative = os.path.relpath(root, source)
            for name in sorted(dirs) + sorted(files):
                path = os.path.join(root, name)
                inside = name if relative == "." else f"{relative}/{name}"
                st = os.lstat(path)
                attrs = Attributes(stat.S_IMODE(st.st_mode), st.st_mtime_ns)
                if stat.S_ISLNK(st.st_mode):
                    tree.symlink(inside, links.target(inside, os.readlink(path)))
                elif stat.S_ISDIR(st.st_mode):
                    tree.mkdir(inside, attrs)
                elif stat.S_ISREG(st.st_mode):
                    with open(path, "rb") as content:
                        tree.write_file(inside, content, st.st_size, attrs)
        for name, pointed in links.missing().items():
            tree.symlink(name, pointed)
        tree.finish()
