"""The recovery planner over random timeline trees: it never silently picks one history when
another history reaches the same target with different data.

A model of a cluster's life: timeline 1 commits; later timelines branch off a commit of an
earlier one (a PITR or a failover) and commit on their own, while their parent may or may not
keep going. Every commit is at a known LSN and time; segments are archived after their last
commit; base backups start between commits. The model replays each timeline's history to a
target exactly as PostgreSQL does (stop before the first commit after the target time, or at the
target LSN) and compares the planner's choice against every history that reaches the target.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backup_engine.errors import BackupEngineError
from backup_engine.postgres.lsn import format_lsn
from backup_engine.postgres.manifest import manifest_key
from backup_engine.postgres.pitr import plan_recovery
from backup_engine.postgres.targets import RecoveryTarget
from backup_engine.postgres.timelines import segment_name
from backup_engine.postgres.wal import META_ARCHIVED_AT, WAL_PREFIX
from backup_engine.storage import LocalStorage
from tests.test_manifest import sample_manifest

SEG = 16 * 1024 * 1024
STEP = SEG // 4  # four commits per segment
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Line:
    tli: int
    parent: int | None
    switch: int  # first LSN of this timeline's own WAL
    born: datetime
    commits: list[tuple[int, datetime]] = field(default_factory=list)  # (lsn, time)


@dataclass
class Cluster:
    lines: dict[int, Line]

    def chain(self, tli: int) -> list[tuple[int, int, int | None]]:
        parts: list[tuple[int, int, int | None]] = []
        end: int | None = None
        line: Line | None = self.lines[tli]
        while line is not None:
            parts.insert(0, (line.tli, line.switch, end))
            end = line.switch
            line = self.lines[line.parent] if line.parent else None
        return parts

    def replay(self, tli: int, target: RecoveryTarget) -> tuple[bool, tuple[int, int] | None]:
        """(reached, last commit replayed) along `tli`'s history, as PostgreSQL would."""
        last = None
        for part_tli, start, end in self.chain(tli):
            for lsn, moment in self.lines[part_tli].commits:
                if lsn < start or (end is not None and lsn >= end):
                    continue
                if target.kind == "time" and target.time is not None and moment > target.time:
                    return True, last
                if target.kind == "lsn" and target.lsn is not None and lsn >= target.lsn:
                    return True, last
                last = (part_tli, lsn)
        return False, last  # the archive ended first: PostgreSQL stops with FATAL


@st.composite
def clusters(draw: st.DrawFn) -> tuple[Cluster, list[tuple[int, int]]]:
    lines: dict[int, Line] = {}
    root = Line(1, None, 2 * SEG, T0)
    count = draw(st.integers(4, 24))
    root.commits = [(2 * SEG + (k + 1) * STEP - 8, T0 + timedelta(minutes=k)) for k in range(count)]
    lines[1] = root
    at_branches: list[tuple[int, int]] = []  # backups right at a branch point: the hard case
    for tli in range(2, draw(st.integers(2, 5)) + 1):
        parent = lines[draw(st.sampled_from(sorted(lines)))]
        if not parent.commits:
            continue
        index = draw(st.integers(0, len(parent.commits) - 1))
        switch_lsn, switch_time = parent.commits[index]
        switch = switch_lsn + 6  # after a backup that starts at this commit (+2 to +4)
        if draw(st.booleans()):
            at_branches.append((parent.tli, index))
        born = switch_time + timedelta(seconds=draw(st.integers(1, 3000)))
        if draw(st.booleans()):  # the parent stopped at the branch (it was lost)
            parent.commits = parent.commits[: index + draw(st.integers(1, 2))]
        line = Line(tli, parent.tli, switch, born)
        own = draw(st.integers(0, 12))
        line.commits = [
            (switch + (k + 1) * STEP, born + timedelta(minutes=k, seconds=30)) for k in range(own)
        ]
        lines[tli] = line
    # Backups start just after a commit (their recorded start time precedes what follows).
    picks = draw(
        st.lists(
            st.tuples(st.sampled_from(sorted(lines)), st.integers(0, 40)), min_size=1, max_size=3
        )
    )
    backups = [(tli, k % len(lines[tli].commits)) for tli, k in picks if lines[tli].commits]
    backups += [(tli, k) for tli, k in at_branches if k < len(lines[tli].commits)]
    return Cluster(lines), backups or [(1, 0)]


def _write(repo: LocalStorage, key: str, data: bytes, moment: datetime) -> None:
    repo.put_bytes(key, data, metadata={META_ARCHIVED_AT: moment.isoformat()})
    stamp = moment.timestamp()
    os.utime(repo.root / key, (stamp, stamp))


def _archive(repo: LocalStorage, cluster: Cluster, backups: list[tuple[int, int]]) -> None:
    for line in cluster.lines.values():
        segments: dict[int, datetime] = {line.switch // SEG: line.born}
        for lsn, moment in line.commits:
            segments[lsn // SEG] = max(segments.get(lsn // SEG, moment), moment)
        for number, moment in segments.items():
            key = f"{WAL_PREFIX}{segment_name(line.tli, number, SEG)}"
            _write(repo, key, b"wal", moment + timedelta(seconds=5))
        if line.parent is not None:
            history = "".join(
                f"{tli}\t{format_lsn(end)}\tbranch\n"
                for tli, _, end in cluster.chain(line.tli)
                if end is not None
            )
            _write(repo, f"{WAL_PREFIX}{line.tli:08X}.history", history.encode(), line.born)
    for n, (tli, index) in enumerate(backups):
        lsn, moment = cluster.lines[tli].commits[index]
        backup_id = f"2026010{1 + n}T000000Z"
        manifest = replace(
            sample_manifest(), backup_id=backup_id, timeline=tli,
            start_lsn=format_lsn(lsn + 2), stop_lsn=format_lsn(lsn + 4),
            start_time=moment + timedelta(microseconds=1),
            stop_time=moment + timedelta(microseconds=2),
        )  # fmt: skip
        repo.put_bytes(manifest_key(backup_id), manifest.to_json().encode())


def target_near_a_commit(cluster: Cluster, data: st.DataObject) -> RecoveryTarget:
    """Targets where histories differ: around commits, switch points and backup starts."""
    line = cluster.lines[data.draw(st.sampled_from(sorted(cluster.lines)))]
    lsn, moment = data.draw(st.sampled_from(line.commits or [(line.switch, line.born)]))
    if data.draw(st.booleans()):
        return RecoveryTarget(
            "time", time=moment + timedelta(seconds=data.draw(st.integers(-90, 90)))
        )
    return RecoveryTarget("lsn", lsn=max(0, lsn + data.draw(st.integers(-STEP, STEP))))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=clusters(), data=st.data())
def test_the_planner_never_picks_one_of_two_different_histories(
    world: tuple[Cluster, list[tuple[int, int]]], data: st.DataObject
) -> None:
    cluster, backups = world
    target = target_near_a_commit(cluster, data)
    root = Path(tempfile.mkdtemp(prefix="timeline-property-"))
    try:
        repo = LocalStorage(root)
        _archive(repo, cluster, backups)
        try:
            plan = plan_recovery(repo, "auto", target)
        except BackupEngineError:
            return  # refused before anything is written: never silently wrong
        chosen_reached, chosen_state = cluster.replay(plan.timeline, target)
        assert plan.backup.stop_lsn_value <= (target.lsn or plan.backup.stop_lsn_value)
        if not chosen_reached:
            return  # PostgreSQL stops with FATAL, which the restore reports
        for tli in cluster.lines:
            reached, state = cluster.replay(tli, target)
            if reached and state != chosen_state and _usable(cluster, backups, tli, target):
                raise AssertionError(
                    f"planned timeline {plan.timeline} (state {chosen_state}) but timeline "
                    f"{tli} reaches {target.describe()} with state {state}"
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _usable(
    cluster: Cluster, backups: list[tuple[int, int]], tli: int, target: RecoveryTarget
) -> bool:
    """Does a backup on `tli`'s history end before the target (could anyone recover there)?"""
    for backup_tli, index in backups:
        lsn, moment = cluster.lines[backup_tli].commits[index]
        on_history = any(
            part == backup_tli and start <= lsn + 2 and (end is None or lsn + 4 <= end)
            for part, start, end in cluster.chain(tli)
        )
        before = (target.time is not None and moment <= target.time) or (
            target.lsn is not None and lsn + 4 <= target.lsn
        )
        if on_history and before:
            return True
    return False
