"""The files of one base backup, from the repository into a data directory and its tablespaces:
each object checked against its sha256 as it streams, decompressed and extracted in one pass,
bounded by the size its manifest recorded. Into empty directories (SafeTree), or, for a delta
restore, over the cluster's own files where they differ (DeltaTree, delta_target.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from backup_engine.codecs import get_codec
from backup_engine.integrity import Expected, verified_content
from backup_engine.postgres.backup_facts import MANIFEST_MEMBER
from backup_engine.postgres.delta_target import DeltaTarget
from backup_engine.postgres.file_checksums import FileChecksums
from backup_engine.postgres.manifest import BASE_TAR, PROTOCOL, BaseBackupManifest, StoredFile
from backup_engine.postgres.tablespaces import LINK_DIR, NoLinks, TablespaceLinks
from backup_engine.progress import Progress
from backup_engine.safefs import Attributes, SafeTree
from backup_engine.storage import Storage
from backup_engine.tarfiles import ExtractStats, Links, extract_stream


def restore_files(
    storage: Storage,
    manifest: BaseBackupManifest,
    pgdata: Path,
    planned: Mapping[int, Path],
    progress: Progress,
    sums: FileChecksums | None,
    delta: DeltaTarget | None = None,
) -> tuple[ExtractStats, dict[str, str]]:
    """The data directory from base.tar, each tablespace from its own archive into its planned
    directory (linked from pg_tblspc), and PostgreSQL's backup_manifest where pg_verifybackup
    looks for it. Returns what was written and the sha256 of every object read."""
    codec = get_codec(manifest.compression)
    base = manifest.file(BASE_TAR + codec.suffix)
    stats = _download_and_extract(
        storage, manifest, base, pgdata, progress, sums,
        links=TablespaceLinks(planned, base.key), writer=delta.tree if delta else SafeTree,
    )  # fmt: skip
    checked = {base.key: base.sha256}
    for space in manifest.tablespaces:
        stored = manifest.file(space.archive)
        more = _download_and_extract(
            storage, manifest, stored, planned[space.oid], progress, sums,
            links=NoLinks(stored.key), prefix=f"{LINK_DIR}/{space.oid}/",
            writer=delta.tablespace_tree if delta else SafeTree,
        )  # fmt: skip
        stats = ExtractStats(stats.files + more.files, stats.bytes + more.bytes)
        checked[stored.key] = stored.sha256
    if manifest.method == PROTOCOL:  # our client keeps it out of base.tar (a delta removed ours)
        stored = manifest.file(MANIFEST_MEMBER)
        _place_manifest(storage, stored, pgdata, progress)
        checked[stored.key] = stored.sha256
    return stats, checked


def _download_and_extract(
    storage: Storage,
    manifest: BaseBackupManifest,
    stored: StoredFile,
    target: Path,
    progress: Progress,
    sums: FileChecksums | None = None,
    *,
    links: Links | None = None,
    prefix: str = "",
    writer: Callable[[Path, str], SafeTree] = SafeTree,
) -> ExtractStats:
    codec = get_codec(manifest.compression)
    expected = Expected.of(stored)
    with (
        progress.task(f"restore {manifest.backup_id} {stored.name}", stored.size) as task,
        verified_content(storage, expected, codec, task) as content,
    ):
        return extract_stream(content, target, where=stored.key, limit=stored.raw_size,
                              tally=sums, tally_prefix=prefix, links=links,
                              writer=writer)  # fmt: skip


def _place_manifest(storage: Storage, stored: StoredFile, pgdata: Path, progress: Progress) -> None:
    """backup_manifest, checked against its sha256 as it streams, created new in pgdata (a
    base.tar that already held one is refused by O_EXCL: two manifests, one is forged)."""
    expected = Expected.of(stored)
    with (
        progress.task(f"restore {stored.name}", stored.size) as task,
        verified_content(storage, expected, get_codec("none"), task) as content,
        SafeTree(pgdata, stored.key) as tree,
    ):
        tree.write_file(MANIFEST_MEMBER, content, stored.size, Attributes(0o600))
        tree.finish()
