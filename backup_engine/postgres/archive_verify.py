"""`pg verify --archive`: the WAL archive checked ahead of any restore, like pgBackRest's
`verify` and WAL-G's `wal-verify`: every segment present from the oldest backup's start to the
newest archived WAL along the newest timeline, every history file readable, every object's
content matching the sha256 recorded when it was archived.

Reading every segment each night would cost the whole archive's bytes; what was read and found
whole is remembered in a local state file (this host's, never the repository's: anyone who can
write to the bucket could mark damaged segments as checked), keyed by the object's size,
time and ETag, so a nightly run reads only what is new and a replaced object is read again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from backup_engine.errors import StorageError
from backup_engine.postgres.catalog import BASE_BACKUPS
from backup_engine.postgres.timelines import TimelineTree, read_timeline_tree
from backup_engine.postgres.wal import META_SHA256, stored_sha256
from backup_engine.storage.base import ObjectInfo, Storage

STATE_VERSION = 1


@dataclass
class ArchiveReport:
    checked_from: str | None = None  # the oldest backup's start, where the archive must begin
    timeline: int | None = None
    missing: list[str] = field(default_factory=list)  # segment names
    damaged: list[tuple[str, str]] = field(default_factory=list)  # (key, why)
    broken: list[tuple[int, str]] = field(default_factory=list)  # (timeline, why)
    read: int = 0  # objects read this time
    remembered: int = 0  # objects found whole before, not read again

    @property
    def ok(self) -> bool:
        return not (self.missing or self.damaged or self.broken)


def default_state_file(url: str) -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                           "state")  # fmt: skip
    name = hashlib.sha256(url.encode()).hexdigest()[:16]
    return Path(base) / "backup-engine" / f"wal-verified-{name}.json"


def _identity(info: ObjectInfo) -> str:
    """This version of the object: S3 keeps times to the second, so its ETag tells a same-size
    overwrite in that second apart."""
    when = info.modified.isoformat() if info.modified else ""
    return f"{info.size}:{when}:{info.etag or ''}"


def _load_state(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    ok = isinstance(data, dict) and data.get("version") == STATE_VERSION
    verified = data.get("verified") if ok else None
    if not isinstance(verified, dict):
        return {}
    return {k: v for k, v in verified.items() if isinstance(k, str) and isinstance(v, str)}


def _save_state(path: Path, verified: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".wal-verified-")
    with os.fdopen(fd, "w") as out:
        json.dump({"version": STATE_VERSION, "verified": verified}, out)
    os.replace(tmp, path)


def _check_object(storage: Storage, info: ObjectInfo) -> str | None:
    """Why the object is not whole, or None."""
    try:
        recorded = storage.stat(info.key).metadata.get(META_SHA256)
        if not recorded:
            return "no sha256 was recorded when it was archived"
        actual = stored_sha256(storage, info)
    except StorageError as exc:
        return exc.message
    if actual is None:
        return "it does not decompress to a WAL file (damaged, or larger than any WAL file)"
    if actual != recorded:
        return f"its content does not match the sha256 recorded when archived ({recorded[:12]}...)"
    return None


def _gaps(tree: TimelineTree, report: ArchiveReport, start_lsn: int) -> None:
    from backup_engine.postgres.lsn import format_lsn

    for timeline, why in sorted(tree.broken().items()):
        report.broken.append((timeline, why))
    newest = max(tree.with_wal, default=None)
    if newest is None:
        return
    end = tree.end_lsn(newest)
    report.timeline, report.checked_from = newest, format_lsn(start_lsn)
    if end is not None:
        report.missing = tree.missing(newest, start_lsn, end - 1)


def verify_archive(
    storage: Storage, *, state_file: Path | None = None, concurrency: int = 4
) -> ArchiveReport:
    """Check the archive; read the objects not found whole before (all, with no state file)."""
    report = ArchiveReport()
    backups = BASE_BACKUPS.list(storage).backups
    if not backups:
        return report
    oldest = min(backups, key=lambda b: b.start_lsn_value)
    tree = read_timeline_tree(storage, oldest.wal_segment_size)
    _gaps(tree, report, oldest.start_lsn_value)
    objects = [info for timeline in tree.timelines.values() for info in timeline.objects().values()]
    objects += [t.history_object for t in tree.timelines.values() if t.history_object is not None]
    verified = _load_state(state_file) if state_file else {}
    fresh = [info for info in objects if verified.get(info.key) != _identity(info)]
    report.remembered = len(objects) - len(fresh)
    with ThreadPoolExecutor(concurrency, thread_name_prefix="wal-verify") as pool:
        problems = list(pool.map(lambda info: _check_object(storage, info), fresh))
    report.read = len(fresh)
    present = {o.key for o in objects}
    keep = {key: ident for key, ident in verified.items() if key in present}
    for info, problem in zip(fresh, problems, strict=True):
        if problem is None:
            keep[info.key] = _identity(info)
        else:
            keep.pop(info.key, None)
            report.damaged.append((info.key, problem))
    if state_file is not None:
        _save_state(state_file, keep)
    return report
