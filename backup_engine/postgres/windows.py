"""What `pg list` shows about the WAL archive: per timeline, where it came from and the window a
point-in-time recovery can reach on it; broken timelines named, never hidden."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from backup_engine.postgres.catalog import Catalog
from backup_engine.postgres.lsn import format_lsn
from backup_engine.postgres.manifest import BaseBackupManifest
from backup_engine.postgres.timelines import TimelineTree, read_timeline_tree
from backup_engine.storage.base import Storage


@dataclass(frozen=True)
class RecoverableWindow:
    timeline: int
    parent: int | None  # the timeline it branched off
    branch_lsn: int | None
    start_time: datetime | None  # the earliest backup on this timeline's history ended
    start_backup: str | None
    end_time: datetime | None  # the newest WAL of this timeline was archived
    end_lsn: int | None
    broken: str | None = None  # why it cannot be followed

    def to_dict(self) -> dict[str, Any]:
        return {
            "timeline": self.timeline,
            "parent": self.parent,
            "branch_lsn": format_lsn(self.branch_lsn) if self.branch_lsn is not None else None,
            "from": self.start_time.isoformat() if self.start_time else None,
            "from_backup": self.start_backup,
            "to": self.end_time.isoformat() if self.end_time else None,
            "to_lsn": format_lsn(self.end_lsn) if self.end_lsn is not None else None,
            "broken": self.broken,
        }

    def describe(self) -> str:
        origin = (
            f" (branched off {self.parent} at {format_lsn(self.branch_lsn)})"
            if self.parent is not None and self.branch_lsn is not None
            else ""
        )
        if self.broken:
            return f"timeline {self.timeline}: BROKEN, {self.broken}"
        if self.start_time is None:
            return f"timeline {self.timeline}{origin}: no backup on its history"
        end = self.end_time.strftime("%Y-%m-%d %H:%M:%S") if self.end_time else "?"
        start = self.start_time.strftime("%Y-%m-%d %H:%M:%S")
        return f"timeline {self.timeline}{origin}: recoverable from {start} to {end} UTC"


def _window(
    tree: TimelineTree, catalog: Catalog[BaseBackupManifest], tli: int
) -> RecoverableWindow:
    switch = tree.branch_point(tli)
    usable = [
        b for b in catalog.backups
        if tree.on_history(tli, b.timeline, b.start_lsn_value, b.stop_lsn_value)
    ]  # fmt: skip
    first = usable[0] if usable else None
    return RecoverableWindow(
        tli,
        switch.parent if switch else None,
        switch.switch_lsn if switch else None,
        first.stop_time if first else None,
        first.backup_id if first else None,
        tree.end_time(tli),
        tree.own_end_lsn(tli),
    )


def recoverable_windows(
    storage: Storage, catalog: Catalog[BaseBackupManifest], tree: TimelineTree | None = None
) -> list[RecoverableWindow]:
    """One entry per timeline with archived WAL (or a history file)."""
    if tree is None:
        if not catalog.backups:
            return []
        tree = read_timeline_tree(storage, catalog.backups[-1].wal_segment_size)
    broken = tree.broken()
    windows = []
    for tli in tree.numbers:
        if tli in broken:
            windows.append(RecoverableWindow(tli, None, None, None, None, tree.end_time(tli),
                                             tree.own_end_lsn(tli), broken[tli]))  # fmt: skip
        else:
            windows.append(_window(tree, catalog, tli))
    return windows
