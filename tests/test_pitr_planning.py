"""Choosing the backup for a target and refusing impossible recoveries, from the repository
alone (synthetic manifests and WAL objects; no server needed)."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backup_engine.errors import BackupNotFound, UsageError
from backup_engine.postgres.catalog import list_base_backups
from backup_engine.postgres.lsn import format_lsn
from backup_engine.postgres.manifest import manifest_key
from backup_engine.postgres.pitr import AmbiguousTarget, TargetOutOfRange, WalGap, plan_recovery
from backup_engine.postgres.targets import RecoveryTarget
from backup_engine.postgres.timelines import parse_history, read_timeline_tree, segment_name
from backup_engine.postgres.wal import META_ARCHIVED_AT, WAL_PREFIX
from backup_engine.postgres.windows import recoverable_windows
from backup_engine.storage import LocalStorage
from tests.test_manifest import sample_manifest

SEG = 16 * 1024 * 1024
T0 = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)


def add_backup(
    repo: LocalStorage,
    backup_id: str,
    stop_segment: int,
    stop_time: datetime,
    *,
    timeline: int = 1,
    next_xid: int | None = None,
) -> None:
    manifest = replace(
        sample_manifest(),
        backup_id=backup_id,
        start_time=stop_time - timedelta(seconds=5),
        stop_time=stop_time,
        start_lsn=format_lsn(stop_segment * SEG + 0x28),
        stop_lsn=format_lsn(stop_segment * SEG + 0x100),
        timeline=timeline,
        next_xid=next_xid,
    )
    repo.put_bytes(manifest_key(backup_id), manifest.to_json().encode())


def add_wal(repo: LocalStorage, timeline: int, number: int, archived: datetime) -> None:
    key = f"{WAL_PREFIX}{segment_name(timeline, number, SEG)}"
    repo.put_bytes(key, b"wal", metadata={META_ARCHIVED_AT: archived.isoformat()})
    stamp = archived.timestamp()
    os.utime(repo.root / key, (stamp, stamp))  # as if written then


@pytest.fixture
def repo(tmp_path: Path) -> LocalStorage:
    """Two backups, ending in segment 2 at T0 and in segment 6 at T0 + 10 min; WAL segments
    2..9, segment n archived at T0 + (n - 2) * 2.5 min + 1 s."""
    store = LocalStorage(tmp_path)
    add_backup(store, "20261125T020000Z", 2, T0, next_xid=1000)
    add_backup(store, "20261125T021000Z", 6, T0 + timedelta(minutes=10), next_xid=2000)
    for number in range(2, 10):
        add_wal(store, 1, number, archived_at(number))
    return store


def archived_at(number: int) -> datetime:
    return T0 + timedelta(minutes=(number - 2) * 2.5, seconds=1)


def at(minutes: float) -> RecoveryTarget:
    return RecoveryTarget("time", time=T0 + timedelta(minutes=minutes))


def test_time_target_uses_the_newest_backup_that_ended_before_it(repo: LocalStorage) -> None:
    assert plan_recovery(repo, "auto", at(5)).backup.backup_id == "20261125T020000Z"
    assert plan_recovery(repo, "auto", at(10.5)).backup.backup_id == "20261125T021000Z"


def test_lsn_target_uses_the_newest_backup_ending_before_it(repo: LocalStorage) -> None:
    early = RecoveryTarget("lsn", lsn=4 * SEG)
    late = RecoveryTarget("lsn", lsn=8 * SEG)
    assert plan_recovery(repo, "auto", early).backup.backup_id == "20261125T020000Z"
    assert plan_recovery(repo, "auto", late).backup.backup_id == "20261125T021000Z"


def test_xid_target_uses_the_recorded_next_xid(repo: LocalStorage) -> None:
    assert plan_recovery(repo, "auto", RecoveryTarget("xid", xid=1500)).backup.backup_id == (
        "20261125T020000Z"
    )
    assert plan_recovery(repo, "auto", RecoveryTarget("xid", xid=2500)).backup.backup_id == (
        "20261125T021000Z"
    )
    with pytest.raises(TargetOutOfRange, match="before the recoverable window"):
        plan_recovery(repo, "auto", RecoveryTarget("xid", xid=10))


def test_restore_point_target_is_looked_up_in_the_repository(repo: LocalStorage) -> None:
    record = {
        "name": "pre-upgrade",
        "lsn": format_lsn(7 * SEG + 5),
        "time": T0.isoformat(),
        "timeline": 1,
    }
    repo.put_bytes("postgres/restore-points/pre-upgrade.json", json.dumps(record).encode())
    plan = plan_recovery(repo, "auto", RecoveryTarget("name", name="pre-upgrade"))
    assert plan.backup.backup_id == "20261125T021000Z"
    with pytest.raises(UsageError, match="not recorded"):
        plan_recovery(repo, "auto", RecoveryTarget("name", name="never-made"))


def test_latest_and_immediate_use_the_newest_backup(repo: LocalStorage) -> None:
    assert plan_recovery(repo, "auto", RecoveryTarget("latest")).backup.backup_id == (
        "20261125T021000Z"
    )
    plan = plan_recovery(repo, "auto", RecoveryTarget("immediate"))
    assert plan.backup.backup_id == "20261125T021000Z"


def test_a_target_before_the_first_backup_is_refused_with_the_window(repo: LocalStorage) -> None:
    with pytest.raises(
        TargetOutOfRange, match=r"starts when the first backup ended: 2026-11-25T02:00:00"
    ):
        plan_recovery(repo, "auto", at(-30))


def test_a_target_after_the_archive_is_refused_with_the_window(repo: LocalStorage) -> None:
    with pytest.raises(TargetOutOfRange, match="after the newest archived WAL"):
        plan_recovery(repo, "auto", at(60))
    with pytest.raises(TargetOutOfRange, match="beyond the archived WAL"):
        plan_recovery(repo, "auto", RecoveryTarget("lsn", lsn=11 * SEG))


def test_an_explicit_backup_that_ends_after_the_target_is_refused(repo: LocalStorage) -> None:
    with pytest.raises(TargetOutOfRange, match="before backup 20261125T021000Z ended"):
        plan_recovery(repo, "20261125T021000Z", at(5))
    assert plan_recovery(repo, "20261125T020000Z", at(12)).backup.backup_id == "20261125T020000Z"
    with pytest.raises(BackupNotFound):
        plan_recovery(repo, "20200101T000000Z", at(12))


def test_a_missing_segment_on_the_way_is_a_gap(repo: LocalStorage) -> None:
    repo.delete(f"{WAL_PREFIX}{segment_name(1, 4, SEG)}")
    with pytest.raises(WalGap, match=segment_name(1, 4, SEG)):
        plan_recovery(repo, "auto", at(5))
    # A target past the gap but reachable from the newer backup needs none of it.
    assert plan_recovery(repo, "auto", at(10.5)).backup.backup_id == "20261125T021000Z"


def test_a_gap_after_a_time_target_does_not_matter(repo: LocalStorage) -> None:
    repo.delete(f"{WAL_PREFIX}{segment_name(1, 9, SEG)}")
    add_wal(repo, 1, 10, archived_at(10))
    assert plan_recovery(repo, "auto", at(10.5)).needs_wal_until < 9 * SEG
    with pytest.raises(WalGap):
        plan_recovery(repo, "auto", RecoveryTarget("latest"))


def test_no_archived_wal_means_only_the_backup_itself(tmp_path: Path) -> None:
    repo = LocalStorage(tmp_path)
    add_backup(repo, "20261125T020000Z", 2, T0)
    with pytest.raises(TargetOutOfRange, match="no WAL archived after backup"):
        plan_recovery(repo, "auto", RecoveryTarget("latest"))
    assert plan_recovery(repo, "auto", RecoveryTarget("immediate")).backup.backup_id


def test_timelines_are_followed_through_their_history(tmp_path: Path) -> None:
    repo = LocalStorage(tmp_path)
    add_backup(repo, "20261125T020000Z", 2, T0)
    for number in (2, 3):
        add_wal(repo, 1, number, T0 + timedelta(minutes=number))
    for number in (4, 5, 6):  # timeline 2 branched off at segment 4
        add_wal(repo, 2, number, T0 + timedelta(minutes=number))
    repo.put_bytes(
        f"{WAL_PREFIX}00000002.history", f"1\t{format_lsn(4 * SEG + 0x80)}\tpitr\n".encode()
    )
    plan = plan_recovery(repo, "auto", RecoveryTarget("latest"))
    assert plan.timeline == 2
    archive = read_timeline_tree(repo, SEG)
    assert archive.missing(2, 2 * SEG, 6 * SEG) == []
    repo.delete(f"{WAL_PREFIX}{segment_name(1, 3, SEG)}")
    with pytest.raises(WalGap, match=segment_name(1, 3, SEG)):
        plan_recovery(repo, "auto", RecoveryTarget("latest"))


def test_history_files_parse() -> None:
    text = "1\t0/3000000\tno recovery target specified\n\n2\t0/5000098\tbefore 2026-11-25\n"
    switches = parse_history(text)
    assert [(s.parent, s.switch_lsn) for s in switches] == [(1, 0x3000000), (2, 0x5000098)]


# --- timelines: one tree, ambiguity refused, broken timelines are gaps -------------------------


def add_history(repo: LocalStorage, timeline: int, text: str, archived: datetime) -> None:
    key = f"{WAL_PREFIX}{timeline:08X}.history"
    repo.put_bytes(key, text.encode(), metadata={META_ARCHIVED_AT: archived.isoformat()})
    stamp = archived.timestamp()
    os.utime(repo.root / key, (stamp, stamp))


BRANCH = 4 * SEG + 0x80  # timeline 2 branched off timeline 1 here (segment 4)


@pytest.fixture
def forked(tmp_path: Path) -> LocalStorage:
    """Timeline 1 kept archiving (segments 2..9, to T0 + 18 min) after timeline 2 branched off
    it at segment 4 and was born at T0 + 8 min (segments 4..7, to T0 + 14 min): a restored copy
    that archived into its source's repository."""
    repo = LocalStorage(tmp_path)
    add_backup(repo, "20261125T020000Z", 2, T0, next_xid=1000)
    for number in range(2, 10):
        add_wal(repo, 1, number, T0 + timedelta(minutes=2 * number))
    add_history(
        repo, 2, f"1\t{format_lsn(BRANCH)}\tbefore the bad change\n", T0 + timedelta(minutes=8)
    )
    for number in range(4, 8):
        add_wal(repo, 2, number, T0 + timedelta(minutes=2 * number + 1))
    return repo


def test_an_lsn_on_both_histories_is_refused_until_a_timeline_is_named(
    forked: LocalStorage,
) -> None:
    past_branch = RecoveryTarget("lsn", lsn=5 * SEG)
    with pytest.raises(AmbiguousTarget, match=r"timeline 2 \(branched off 1 at 0/4000080\)"):
        plan_recovery(forked, "auto", past_branch)
    assert plan_recovery(forked, "auto", replace(past_branch, timeline="1")).timeline == 1
    plan = plan_recovery(forked, "auto", replace(past_branch, timeline="2"))
    assert (plan.timeline, plan.timeline_setting) == (2, "2")


def test_an_lsn_before_the_branch_means_the_same_data_on_both(forked: LocalStorage) -> None:
    plan = plan_recovery(forked, "auto", RecoveryTarget("lsn", lsn=3 * SEG))
    assert (plan.timeline, plan.timeline_setting) == (1, "current")


def test_latest_is_ambiguous_when_two_timelines_archived_at_the_same_time(
    forked: LocalStorage,
) -> None:
    with pytest.raises(AmbiguousTarget, match="archiving WAL at the same time"):
        plan_recovery(forked, "auto", RecoveryTarget("latest"))
    assert plan_recovery(forked, "auto", RecoveryTarget("latest", timeline="1")).timeline == 1


def test_latest_follows_the_timeline_born_after_the_old_one_stopped(tmp_path: Path) -> None:
    """The incident: timeline 1 archived up to the bad change and died; the PITR made 2."""
    repo = LocalStorage(tmp_path)
    add_backup(repo, "20261125T020000Z", 2, T0)
    for number in range(2, 6):
        add_wal(repo, 1, number, T0 + timedelta(minutes=number))
    add_history(repo, 2, f"1\t{format_lsn(BRANCH)}\tpitr\n", T0 + timedelta(minutes=30))
    for number in range(4, 7):
        add_wal(repo, 2, number, T0 + timedelta(minutes=30 + number))
    plan = plan_recovery(repo, "auto", RecoveryTarget("latest"))
    assert (plan.timeline, plan.timeline_setting) == (2, "2")
    # A time after timeline 1 stopped archiving can only be on timeline 2.
    assert plan_recovery(repo, "auto", at(35)).timeline == 2
    # A time while timeline 1 was still archiving, after the backup: it may lie past the
    # branch on timeline 1 (the bad change) or mean the branch point on 2.
    with pytest.raises(AmbiguousTarget, match="more than one history"):
        plan_recovery(repo, "auto", at(4))


def test_a_time_before_the_last_backup_start_below_the_branch_is_not_ambiguous(
    forked: LocalStorage,
) -> None:
    add_backup(forked, "20261125T020300Z", 3, T0 + timedelta(minutes=3), next_xid=1100)
    # backup 2 started at T0 + 3 min - 5 s at LSN 3/28, below the branch: everything past the
    # branch was written after that, so a target before it is the same on both histories.
    assert plan_recovery(forked, "auto", at(2.9)).timeline == 1
    with pytest.raises(AmbiguousTarget):
        plan_recovery(forked, "auto", at(3.5))


def test_a_backup_taken_after_a_pitr_is_used_for_latest(tmp_path: Path) -> None:
    """PITR -> promote -> backup -> new commits -> restore latest: the backup of timeline 2
    and its WAL are used, never the old target of timeline 1."""
    repo = LocalStorage(tmp_path)
    add_backup(repo, "20261125T020000Z", 2, T0)
    for number in range(2, 5):
        add_wal(repo, 1, number, T0 + timedelta(minutes=number))
    add_history(repo, 2, f"1\t{format_lsn(BRANCH)}\tpitr\n", T0 + timedelta(minutes=30))
    add_backup(repo, "20261125T024000Z", 6, T0 + timedelta(minutes=40), timeline=2)
    for number in range(4, 9):
        add_wal(repo, 2, number, T0 + timedelta(minutes=30 + number))
    plan = plan_recovery(repo, "auto", RecoveryTarget("latest"))
    assert (plan.backup.backup_id, plan.timeline, plan.timeline_setting) == (
        "20261125T024000Z", 2, "current",
    )  # fmt: skip
    # Timeline 1 asked for: the backup of timeline 2 is not on its history.
    plan = plan_recovery(repo, "auto", RecoveryTarget("latest", timeline="1"))
    assert plan.backup.backup_id == "20261125T020000Z"
    with pytest.raises(TargetOutOfRange, match="not on the history"):
        plan_recovery(repo, "20261125T024000Z", RecoveryTarget("latest", timeline="1"))


def test_a_timeline_without_its_history_file_is_a_gap(forked: LocalStorage) -> None:
    forked.delete(f"{WAL_PREFIX}00000002.history")
    for target in (RecoveryTarget("latest"), at(3), RecoveryTarget("lsn", lsn=3 * SEG)):
        with pytest.raises(WalGap, match=r"00000002\.history is missing") as raised:
            plan_recovery(forked, "auto", target)
        assert raised.value.exit_code == 4
    with pytest.raises(WalGap, match="cannot be followed"):
        plan_recovery(forked, "auto", RecoveryTarget("latest", timeline="2"))
    assert plan_recovery(forked, "auto", RecoveryTarget("latest", timeline="1")).timeline == 1
    tree = read_timeline_tree(forked, SEG)
    assert list(tree.broken()) == [2]


@pytest.mark.parametrize(
    "text",
    [
        "garbage\n",
        "2\t0/4000080\tparent not older\n",
        "1\t0/5000000\tfirst\n1\t0/6000000\tsame parent twice\n",
        "1\tnot-an-lsn\tx\n",
        "\u00b9\t0/1\tx\n",
    ],
)
def test_a_malformed_history_file_breaks_its_timeline(forked: LocalStorage, text: str) -> None:
    add_history(forked, 2, text, T0)  # overwrites: LocalStorage.put_bytes replaces
    with pytest.raises(WalGap, match=r"00000002\.history is unreadable"):
        plan_recovery(forked, "auto", RecoveryTarget("latest"))


def test_a_restore_point_recovers_on_the_timeline_it_was_made_on(forked: LocalStorage) -> None:
    record = {"name": "p", "lsn": format_lsn(5 * SEG), "time": T0.isoformat(), "timeline": 2}
    forked.put_bytes("postgres/restore-points/p.json", json.dumps(record).encode())
    assert plan_recovery(forked, "auto", RecoveryTarget("name", name="p")).timeline == 2
    with pytest.raises(TargetOutOfRange, match="made on timeline 2"):
        plan_recovery(forked, "auto", RecoveryTarget("name", name="p", timeline="1"))


def test_an_explicit_timeline_that_branched_before_the_backup_is_refused(tmp_path: Path) -> None:
    repo = LocalStorage(tmp_path)
    for number in range(2, 9):
        add_wal(repo, 1, number, T0 + timedelta(minutes=number))
    add_history(repo, 2, f"1\t{format_lsn(3 * SEG)}\told\n", T0 + timedelta(minutes=20))
    add_wal(repo, 2, 3, T0 + timedelta(minutes=21))
    add_backup(repo, "20261125T020600Z", 6, T0 + timedelta(minutes=6))  # after the branch
    with pytest.raises(TargetOutOfRange, match="not on the history of timeline 2"):
        plan_recovery(repo, "auto", RecoveryTarget("latest", timeline="2"))
    assert plan_recovery(repo, "auto", RecoveryTarget("latest")).timeline == 1


def test_pg_list_names_a_broken_timeline(forked: LocalStorage) -> None:
    forked.delete(f"{WAL_PREFIX}00000002.history")
    windows = recoverable_windows(forked, list_base_backups(forked))
    assert [w.timeline for w in windows] == [1, 2]
    assert windows[0].describe().startswith("timeline 1: recoverable from 2026-11-25 02:00:00")
    assert windows[1].broken and "BROKEN" in windows[1].describe()
    assert windows[1].to_dict()["broken"].endswith("where it branched off is unknown")


def test_pg_list_shows_where_each_timeline_branched(forked: LocalStorage) -> None:
    windows = recoverable_windows(forked, list_base_backups(forked))
    assert windows[1].describe().startswith("timeline 2 (branched off 1 at 0/4000080)")
    assert windows[1].to_dict()["parent"] == 1
