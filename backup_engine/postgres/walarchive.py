"""What the WAL archive holds: segments per timeline, timeline history, and whether a recovery
from a given backup to a given point has every segment it needs.

Built from one listing of `postgres/wal/`; nothing is downloaded except timeline history files
(a few bytes each).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from backup_engine.codecs import get_codec
from backup_engine.postgres.lsn import parse_lsn
from backup_engine.postgres.wal import (
    HISTORY,
    META_ARCHIVED_AT,
    SEGMENT,
    WAL_PREFIX,
    split_wal_key,
)
from backup_engine.storage.base import ObjectInfo, Storage


def segment_number(name: str, segment_size: int) -> tuple[int, int]:
    """(timeline, absolute segment number) of a 24-hex-digit segment name."""
    per_xlogid = 0x1_0000_0000 // segment_size
    return int(name[:8], 16), int(name[8:16], 16) * per_xlogid + int(name[16:24], 16)


def segment_name(timeline: int, number: int, segment_size: int) -> str:
    per_xlogid = 0x1_0000_0000 // segment_size
    return f"{timeline:08X}{number // per_xlogid:08X}{number % per_xlogid:08X}"


@dataclass(frozen=True)
class TimelineSwitch:
    parent: int
    switch_lsn: int  # the new timeline starts at this LSN


@dataclass
class WalArchive:
    segment_size: int
    segments: dict[int, dict[int, ObjectInfo]] = field(default_factory=dict)  # tli -> no -> obj
    partial: dict[int, dict[int, ObjectInfo]] = field(default_factory=dict)
    history: dict[int, list[TimelineSwitch]] = field(default_factory=dict)  # tli -> ancestry

    @property
    def timelines(self) -> list[int]:
        return sorted(set(self.segments) | set(self.partial))

    def newest(self, timeline: int) -> ObjectInfo | None:
        objects = {**self.partial.get(timeline, {}), **self.segments.get(timeline, {})}
        return max(objects.values(), key=lambda o: o.modified or datetime.min) if objects else None

    def last_segment(self, timeline: int) -> int | None:
        numbers = set(self.segments.get(timeline, {})) | set(self.partial.get(timeline, {}))
        return max(numbers) if numbers else None

    def has(self, timeline: int, number: int) -> bool:
        return number in self.segments.get(timeline, {}) or number in self.partial.get(timeline, {})

    def end_lsn(self, timeline: int) -> int | None:
        """The first byte after the newest archived segment of `timeline`."""
        last = self.last_segment(timeline)
        return None if last is None else (last + 1) * self.segment_size

    def latest_archived_at(self, storage: Storage, timeline: int) -> datetime | None:
        """When the newest WAL of `timeline` was archived: wal-push records it to the microsecond
        in metadata (listings only give S3's one-second LastModified)."""
        newest = self.newest(timeline)
        if newest is None:
            return None
        recorded = storage.stat(newest.key).metadata.get(META_ARCHIVED_AT)
        return datetime.fromisoformat(recorded) if recorded else newest.modified

    def chain(self, timeline: int) -> list[tuple[int, int, int | None]]:
        """(timeline, from LSN, to LSN or None) from the oldest ancestor up to `timeline`."""
        switches = self.history.get(timeline, [])
        parts: list[tuple[int, int, int | None]] = []
        start = 0
        for switch in switches:
            parts.append((switch.parent, start, switch.switch_lsn))
            start = switch.switch_lsn
        parts.append((timeline, start, None))
        return parts

    def missing(self, timeline: int, start_lsn: int, end_lsn: int) -> list[str]:
        """Segments that replay from `start_lsn` through `end_lsn` on `timeline` needs and the
        archive lacks. Ancestor timelines are needed up to the segment before the switch: the
        new timeline's first segment carries the rest of the switch segment."""
        gaps: list[str] = []
        size = self.segment_size
        for tli, from_lsn, to_lsn in self.chain(timeline):
            first = max(start_lsn, from_lsn) // size
            last = end_lsn // size if to_lsn is None else min(end_lsn // size, to_lsn // size - 1)
            for number in range(first, last + 1):
                if not self.has(tli, number):
                    gaps.append(segment_name(tli, number, size))
        return gaps


def parse_history(text: str) -> list[TimelineSwitch]:
    """A timeline history file: one `<parent tli>\\t<switch LSN>\\t<reason>` line per ancestor."""
    switches = []
    for line in text.splitlines():
        fields = line.strip().split()
        if len(fields) >= 2 and not line.lstrip().startswith("#"):
            switches.append(TimelineSwitch(int(fields[0]), parse_lsn(fields[1])))
    return switches


def read_wal_archive(storage: Storage, segment_size: int) -> WalArchive:
    archive = WalArchive(segment_size=segment_size)
    for info in storage.list(WAL_PREFIX):
        split = split_wal_key(info.key)
        if split is None:
            continue
        name, codec_name = split
        if SEGMENT.match(name):
            tli, number = segment_number(name, segment_size)
            archive.segments.setdefault(tli, {})[number] = info
        elif name.endswith(".partial"):
            tli, number = segment_number(name[:24], segment_size)
            archive.partial.setdefault(tli, {})[number] = info
        elif HISTORY.match(name):
            codec = get_codec(codec_name)
            with storage.open_reader(info.key) as raw:
                text = codec.open_decompressed(raw).read(1 << 20).decode(errors="replace")
            archive.history[int(name[:8], 16)] = parse_history(text)
    return archive
