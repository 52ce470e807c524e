"""The timeline tree of a WAL archive: the one place that knows timelines.

Built once from one listing of `postgres/wal/` (plus the timeline history files, a few bytes
each): which segments each timeline holds, where each timeline branched off its parent, when it
was born (its history file was archived) and when it last archived anything. The recovery
planner, `pg list` and `expire` all ask this tree; nothing else parses history files.

A history file is repository input like any other: one that cannot be read, or that does not
describe a well-formed ancestry (parents increasing and older than the timeline, switch points in
order), makes its timeline *broken*, exactly like a timeline whose segments are archived without
any history file. A broken timeline is never followed silently: the planner refuses, `pg list`
names it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from backup_engine.codecs import get_codec
from backup_engine.errors import BackupEngineError, UsageError
from backup_engine.postgres.lsn import format_lsn, parse_lsn
from backup_engine.postgres.wal import (
    HISTORY,
    META_ARCHIVED_AT,
    PARTIAL,
    SEGMENT,
    WAL_PREFIX,
    split_wal_key,
)
from backup_engine.storage.base import ObjectInfo, Storage

MAX_HISTORY_BYTES = 1 << 20
MAX_TIMELINE = 0xFFFFFFFF
NEVER = datetime.min.replace(tzinfo=UTC)


def segment_number(name: str, segment_size: int) -> tuple[int, int]:
    """(timeline, absolute segment number) of a 24-hex-digit segment name."""
    per_xlogid = 0x1_0000_0000 // segment_size
    return int(name[:8], 16), int(name[8:16], 16) * per_xlogid + int(name[16:24], 16)


def segment_name(timeline: int, number: int, segment_size: int) -> str:
    per_xlogid = 0x1_0000_0000 // segment_size
    return f"{timeline:08X}{number // per_xlogid:08X}{number % per_xlogid:08X}"


def history_name(timeline: int) -> str:
    return f"{timeline:08X}.history"


@dataclass(frozen=True)
class TimelineSwitch:
    parent: int
    switch_lsn: int  # the child timeline starts at this LSN


@dataclass(frozen=True)
class Part:
    """A stretch of one history: WAL of `timeline` from `start` up to `end` (None: open end)."""

    timeline: int
    start: int
    end: int | None

    def holds(self, lsn: int) -> bool:
        return self.start <= lsn and (self.end is None or lsn < self.end)


class BadHistory(ValueError):
    pass


def parse_history(text: str, timeline: int | None = None) -> list[TimelineSwitch]:
    """A timeline history file: one `<parent tli>\\t<switch LSN>\\t<reason>` line per ancestor.

    Refuses anything PostgreSQL would not have written: unreadable lines, parents that do not
    increase or are not older than `timeline`, switch points out of order.
    """
    switches: list[TimelineSwitch] = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = stripped.split(None, 2)
        try:
            if len(fields) < 2 or not fields[0].isascii() or not fields[0].isdigit():
                raise UsageError("not '<timeline> <LSN> <reason>'")
            switch = TimelineSwitch(int(fields[0]), parse_lsn(fields[1]))
        except UsageError as exc:
            raise BadHistory(f"line {number}: {exc.message}") from None
        previous = switches[-1] if switches else None
        if switch.parent < 1 or (previous and switch.parent <= previous.parent):
            raise BadHistory(f"line {number}: timeline {switch.parent} out of order")
        if previous and switch.switch_lsn < previous.switch_lsn:
            raise BadHistory(f"line {number}: switch point {fields[1]} goes backwards")
        if timeline is not None and switch.parent >= timeline:
            raise BadHistory(f"line {number}: parent {switch.parent} is not older than {timeline}")
        switches.append(switch)
    return switches


@dataclass
class Timeline:
    tli: int
    segments: dict[int, ObjectInfo] = field(default_factory=dict)  # number -> object
    partial: dict[int, ObjectInfo] = field(default_factory=dict)
    history: list[TimelineSwitch] | None = None  # None: no readable history file
    history_object: ObjectInfo | None = None
    history_problem: str | None = None

    @property
    def has_wal(self) -> bool:
        return bool(self.segments or self.partial)

    def objects(self) -> dict[int, ObjectInfo]:
        return {**self.partial, **self.segments}

    @property
    def last_segment(self) -> int | None:
        numbers = set(self.segments) | set(self.partial)
        return max(numbers) if numbers else None


class TimelineError(BackupEngineError):
    """Asked about a timeline the archive does not describe."""

    exit_code = 4


@dataclass
class TimelineTree:
    segment_size: int
    timelines: dict[int, Timeline] = field(default_factory=dict)
    storage: Storage | None = None  # for archive times recorded in metadata, read lazily
    _times: dict[str, datetime] = field(default_factory=dict)

    # --- what the archive holds ------------------------------------------------------------

    @property
    def numbers(self) -> list[int]:
        return sorted(self.timelines)

    @property
    def with_wal(self) -> list[int]:
        return [t for t in self.numbers if self.timelines[t].has_wal]

    @property
    def root(self) -> int | None:
        """The oldest timeline this archive knows of (including parents named by histories):
        the only one allowed to have no history file."""
        known = set(self.timelines)
        for timeline in self.timelines.values():
            known |= {s.parent for s in timeline.history or []}
        return min(known, default=None)

    def broken(self) -> dict[int, str]:
        """Timelines whose WAL cannot be followed: why, per timeline."""
        problems = {}
        for tli, timeline in sorted(self.timelines.items()):
            if timeline.history_problem is not None:
                problems[tli] = f"{history_name(tli)} is unreadable: {timeline.history_problem}"
            elif timeline.history is None and tli != self.root and timeline.has_wal:
                problems[tli] = (
                    f"its WAL is archived but {history_name(tli)} is missing, so where it "
                    "branched off is unknown"
                )
        return problems

    def has(self, timeline: int, number: int) -> bool:
        found = self.timelines.get(timeline)
        return found is not None and (number in found.segments or number in found.partial)

    def own_end_lsn(self, timeline: int) -> int | None:
        """The first byte after the newest archived segment of `timeline` itself."""
        found = self.timelines.get(timeline)
        last = found.last_segment if found else None
        return None if last is None else (last + 1) * self.segment_size

    def end_lsn(self, timeline: int) -> int | None:
        """Where replay along `timeline`'s history runs out of archived WAL."""
        own = self.own_end_lsn(timeline)
        if own is not None:
            return own
        switches = self._switches(timeline)
        return switches[-1].switch_lsn if switches else None

    # --- history ---------------------------------------------------------------------------

    def _switches(self, timeline: int) -> list[TimelineSwitch]:
        found = self.timelines.get(timeline)
        if found is None or found.history is None:
            if timeline != self.root and found is not None and found.has_wal:
                raise TimelineError(f"timeline {timeline} is broken: {self.broken()[timeline]}")
            return []
        return found.history

    def chain(self, timeline: int) -> list[Part]:
        """The stretches of WAL that replay along `timeline` reads, oldest first."""
        parts = []
        start = 0
        for switch in self._switches(timeline):
            parts.append(Part(switch.parent, start, switch.switch_lsn))
            start = switch.switch_lsn
        parts.append(Part(timeline, start, None))
        return parts

    def ancestry(self, timeline: int) -> set[int]:
        return {part.timeline for part in self.chain(timeline)}

    def timeline_at(self, lsn: int, timeline: int) -> int:
        """Which timeline's WAL holds `lsn` on `timeline`'s history."""
        return next(p.timeline for p in self.chain(timeline) if p.holds(lsn))

    def branch_point(self, timeline: int) -> TimelineSwitch | None:
        switches = self._switches(timeline)
        return switches[-1] if switches else None

    def on_history(self, timeline: int, position: int, start: int, stop: int) -> bool:
        """Is the WAL of `position` from `start` to `stop` (a backup) part of `timeline`'s
        history? PostgreSQL refuses a target timeline that branched off before a backup
        ended ("requested timeline is not a child of this server's history")."""
        return any(
            p.timeline == position and p.start <= start and (p.end is None or stop <= p.end)
            for p in self.chain(timeline)
        )

    def divergence(self, one: int, other: int) -> int | None:
        """The first LSN at which the histories of two timelines differ (None: identical)."""
        if one == other:
            return None
        first, second = self.chain(one), self.chain(other)
        bounds = sorted({p.start for p in first} | {p.start for p in second})
        for lsn in bounds:
            if self.timeline_at(lsn, one) != self.timeline_at(lsn, other):
                return lsn
        return None

    def runs_past(self, timeline: int, lsn: int) -> bool:
        """Does the archive hold WAL of `timeline` itself at or after the segment of `lsn`?"""
        last = self.timelines[timeline].last_segment if timeline in self.timelines else None
        return last is not None and last >= lsn // self.segment_size

    # --- times (what listings and metadata say about when WAL was archived) ----------------

    def _archived_at(self, info: ObjectInfo) -> datetime:
        if info.key not in self._times:
            recorded = None
            if self.storage is not None:
                recorded = self.storage.stat(info.key).metadata.get(META_ARCHIVED_AT)
            try:
                moment = datetime.fromisoformat(recorded) if recorded else info.modified
            except ValueError:
                moment = info.modified
            self._times[info.key] = moment or NEVER
        return self._times[info.key]

    def end_time(self, timeline: int) -> datetime | None:
        """When the newest WAL of `timeline` itself was archived."""
        found = self.timelines.get(timeline)
        if found is None or not found.has_wal:
            return None
        newest = max(found.objects().values(), key=lambda o: (o.modified or NEVER, o.key))
        return self._archived_at(newest)

    def born(self, timeline: int) -> datetime:
        """When `timeline` came to be: its history file was archived (the root: never)."""
        found = self.timelines.get(timeline)
        if found is None or found.history_object is None:
            return NEVER
        return self._archived_at(found.history_object)

    # --- gaps --------------------------------------------------------------------------------

    def missing(self, timeline: int, start_lsn: int, end_lsn: int) -> list[str]:
        """Segments that replay from `start_lsn` through `end_lsn` on `timeline` needs and the
        archive lacks. Ancestor timelines are needed up to the segment before the switch: the
        new timeline's first segment carries the rest of the switch segment."""
        gaps: list[str] = []
        size = self.segment_size
        for part in self.chain(timeline):
            if part.end is not None and part.end <= start_lsn:
                continue
            first = max(start_lsn, part.start) // size
            last = (
                end_lsn // size if part.end is None else min(end_lsn // size, part.end // size - 1)
            )
            gaps += [
                segment_name(part.timeline, number, size)
                for number in range(first, last + 1)
                if not self.has(part.timeline, number)
            ]
        return gaps

    def describe(self, timeline: int) -> str:
        """'timeline 2 (branched off 1 at 0/5000098)' for messages."""
        try:
            switch = self.branch_point(timeline)
        except TimelineError:
            return f"timeline {timeline} (broken)"
        if switch is None:
            return f"timeline {timeline}"
        return (
            f"timeline {timeline} (branched off {switch.parent} at {format_lsn(switch.switch_lsn)})"
        )


def _add_history(
    tree: TimelineTree, storage: Storage, info: ObjectInfo, name: str, codec: str
) -> None:
    tli = int(name[:8], 16)
    timeline = tree.timelines.setdefault(tli, Timeline(tli))
    timeline.history_object = info
    try:
        with storage.open_reader(info.key) as raw:
            data = get_codec(codec).open_decompressed(raw).read(MAX_HISTORY_BYTES + 1)
        if len(data) > MAX_HISTORY_BYTES:
            raise BadHistory(f"larger than {MAX_HISTORY_BYTES} bytes")
        timeline.history = parse_history(data.decode("ascii"), tli)
    except (BadHistory, UnicodeDecodeError, BackupEngineError) as exc:
        timeline.history = None
        timeline.history_problem = getattr(exc, "message", None) or str(exc)


def build_tree(storage: Storage, segment_size: int, listing: Iterable[ObjectInfo]) -> TimelineTree:
    tree = TimelineTree(segment_size=segment_size, storage=storage)
    for info in listing:
        split = split_wal_key(info.key)
        if split is None:
            continue
        name, codec_name = split
        if SEGMENT.match(name) or PARTIAL.match(name):
            tli, number = segment_number(name[:24], segment_size)
            if tli == 0:
                continue  # not a name PostgreSQL writes
            timeline = tree.timelines.setdefault(tli, Timeline(tli))
            (timeline.segments if SEGMENT.match(name) else timeline.partial)[number] = info
        elif HISTORY.match(name) and int(name[:8], 16) > 1:
            _add_history(tree, storage, info, name, codec_name)
    return tree


def read_timeline_tree(storage: Storage, segment_size: int) -> TimelineTree:
    return build_tree(storage, segment_size, storage.list(WAL_PREFIX))
