"""Retention: the plan's table on a simulated clock, and the invariants no sequence of
backups, WAL pushes, clock jumps and expire runs may break (hypothesis state machine)."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from backup_engine.expire import apply_expire, plan_expire
from backup_engine.postgres.catalog import BASE_BACKUPS
from backup_engine.postgres.lsn import format_lsn
from backup_engine.postgres.manifest import BaseBackupManifest
from backup_engine.postgres.timelines import read_timeline_tree, segment_name
from backup_engine.postgres.wal import WAL_PREFIX
from backup_engine.retention import RetentionPolicy, base_backup_decisions, pitr_anchor
from backup_engine.storage import LocalStorage
from tests.test_manifest import sample_manifest, store_backup

SEG = 16 * 1024 * 1024
POLICY = RetentionPolicy()
DAY0 = datetime(2026, 8, 17, 2, 0, tzinfo=UTC)  # a Monday


def synthetic_backup(day: float, segment: int) -> BaseBackupManifest:
    stop = DAY0 + timedelta(days=day)
    return replace(
        sample_manifest(),
        backup_id=stop.strftime("%Y%m%dT%H%M%SZ"),
        start_time=stop - timedelta(seconds=5),
        stop_time=stop,
        start_lsn=format_lsn(segment * SEG + 0x28),
        stop_lsn=format_lsn(segment * SEG + 0x100),
    )


def push_wal(repo: LocalStorage, number: int, archived: datetime) -> None:
    """A segment archived at `archived` (the store's own time, which expire also trusts)."""
    key = f"{WAL_PREFIX}{segment_name(1, number, SEG)}.zst"
    repo.put_bytes(key, b"w")
    os.utime(repo.root / key, (archived.timestamp(), archived.timestamp()))


def test_the_plans_table_over_100_days() -> None:
    backups = [synthetic_backup(day, day * 2 + 2) for day in range(100)]
    now = DAY0 + timedelta(days=99, hours=1)
    decisions = {d.backup_id: d for d in base_backup_decisions(backups, POLICY, now)}
    kept = {b.backup_id for b in backups if decisions[b.backup_id].keep}
    expected = {
        b.backup_id
        for b in backups
        if (now - b.stop_time) <= timedelta(days=30)
        or (b.stop_time.weekday() == 6 and (now - b.stop_time) <= timedelta(days=90))
    }
    assert kept == expected
    assert len([b for b in backups if b.stop_time.weekday() == 6 and b.backup_id in kept]) == 13
    assert decisions[backups[-1].backup_id].reason == "newest backup (always kept)"
    oldest = decisions[backups[0].backup_id]
    assert not oldest.keep and "not a weekly backup" in oldest.reason


def test_the_newest_backup_survives_any_age() -> None:
    backups = [synthetic_backup(0, 2), synthetic_backup(1, 4)]
    decisions = base_backup_decisions(backups, POLICY, DAY0 + timedelta(days=1000))
    assert [d.keep for d in decisions] == [False, True]


def test_the_pitr_window_keeps_its_anchor_even_with_a_short_daily_rule() -> None:
    policy = RetentionPolicy(daily_days=2, weekly_days=2, wal_days=7)
    backups = [synthetic_backup(day, day * 2 + 2) for day in range(20)]
    now = DAY0 + timedelta(days=19, hours=1)
    kept = {d.backup_id for d in base_backup_decisions(backups, policy, now) if d.keep}
    anchor = pitr_anchor(backups, now - timedelta(days=7))
    assert anchor.backup_id in kept
    assert anchor.stop_time <= now - timedelta(days=7)


def test_expire_dry_run_deletes_nothing_and_apply_deletes_manifest_first(tmp_path: Path) -> None:
    repo = LocalStorage(tmp_path)
    for day in range(40):
        store_backup(repo, synthetic_backup(day, day * 2 + 2))
    for number in range(2, 82):
        push_wal(repo, number, DAY0 + timedelta(days=(number - 2) / 2))
    now = DAY0 + timedelta(days=39, hours=1)
    before = sorted(i.key for i in repo.list())
    plan = plan_expire(repo, POLICY, now)
    assert sorted(i.key for i in repo.list()) == before  # planning deletes nothing
    doomed = [i for i in plan.deletions if i.kind == "postgres"]
    assert doomed and all(i.keys[0].endswith("backup.json") for i in doomed)
    apply_expire(repo, plan)
    remaining = BASE_BACKUPS.list(repo)
    assert remaining.incomplete == ()
    assert len(remaining.backups) == len([d for d in plan.items if d.kind == "postgres" and d.keep])
    archive = read_timeline_tree(repo, SEG)
    anchor = pitr_anchor(remaining.backups, now - timedelta(days=7))
    assert archive.missing(1, anchor.start_lsn_value, 81 * SEG) == []


class RetentionMachine(RuleBasedStateMachine):
    """Backups, WAL pushes, clock advances and expire runs in any order."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="retention-"))
        self.repo = LocalStorage(self.tmp)
        self.now = DAY0
        self.next_segment = 2
        self.pushed: set[int] = set()
        self.taken: dict[str, datetime] = {}  # backup id -> stop time
        self.newest = ""

    @initialize()
    def first_backup(self) -> None:
        self.take_backup()

    def _push(self, number: int) -> None:
        push_wal(self.repo, number, self.now)
        self.pushed.add(number)

    @rule()
    def take_backup(self) -> None:
        start = self.next_segment
        manifest = replace(
            synthetic_backup(0, start),
            backup_id=BASE_BACKUPS.new_backup_id(self.repo, self.now),
            start_time=self.now,
            stop_time=self.now + timedelta(seconds=1),
        )
        self._push(start)  # the backup's own segment, archived when it ends
        self.next_segment += 1
        store_backup(self.repo, manifest)
        self.taken[manifest.backup_id] = manifest.stop_time
        self.newest = manifest.backup_id

    @rule(count=st.integers(1, 5))
    def push_wal(self, count: int) -> None:
        for _ in range(count):
            self._push(self.next_segment)
            self.next_segment += 1

    @rule(hours=st.integers(1, 24 * 20))
    def advance_clock(self, hours: int) -> None:
        self.now += timedelta(hours=hours)

    @rule()
    def expire(self) -> None:
        apply_expire(self.repo, plan_expire(self.repo, POLICY, self.now))

    def _backups(self) -> tuple[BaseBackupManifest, ...]:
        return BASE_BACKUPS.list(self.repo).backups

    @invariant()
    def newest_backup_is_never_deleted(self) -> None:
        assert self.newest in {b.backup_id for b in self._backups()}

    @invariant()
    def daily_backups_are_kept_for_their_days(self) -> None:
        present = {b.backup_id for b in self._backups()}
        for backup_id, stopped in self.taken.items():
            if self.now - stopped <= timedelta(days=POLICY.daily_days):
                assert backup_id in present, f"{backup_id} deleted inside the daily window"

    @invariant()
    def pitr_window_has_no_gap(self) -> None:
        backups = self._backups()
        anchor = pitr_anchor(backups, self.now - timedelta(days=POLICY.wal_days))
        archive = read_timeline_tree(self.repo, SEG)
        assert archive.missing(1, anchor.start_lsn_value, max(self.pushed) * SEG) == []

    @invariant()
    def kept_backups_keep_their_own_wal(self) -> None:
        archive = read_timeline_tree(self.repo, SEG)
        for backup in self._backups():
            assert archive.missing(1, backup.start_lsn_value, backup.stop_lsn_value) == []

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


TestRetentionMachine = RetentionMachine.TestCase
TestRetentionMachine.settings = settings(
    max_examples=40, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip


@pytest.mark.parametrize("day", ["monday", "sunday"])
def test_weekly_day_is_configurable(day: str) -> None:
    policy = RetentionPolicy(daily_days=1, weekly_days=90, weekly_day=day)
    backups = [synthetic_backup(d, d * 2 + 2) for d in range(60)]
    now = DAY0 + timedelta(days=59, hours=1)
    decisions = base_backup_decisions(backups, policy, now)
    weekly = [d for d in decisions if d.keep and d.reason.startswith("weekly")]
    assert len(weekly) >= 8
    by_id = {b.backup_id: b for b in backups}
    assert {by_id[d.backup_id].stop_time.strftime("%A").lower() for d in weekly} == {day}
