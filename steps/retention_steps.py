"""Steps about retention: months of backups on a simulated clock, then expire."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from pytest_bdd import parsers, then, when

from backup_engine.codecs import get_codec
from backup_engine.drill.evidence import ScenarioRecord
from backup_engine.drill.markers import Marker, write_marker
from backup_engine.expire import ExpirePlan, apply_expire, plan_expire
from backup_engine.postgres.basebackup import BaseBackupOptions, take_base_backup
from backup_engine.postgres.catalog import BASE_BACKUPS
from backup_engine.postgres.manifest import BaseBackupManifest
from backup_engine.postgres.timelines import read_timeline_tree
from backup_engine.retention import RetentionPolicy, pitr_anchor
from backup_engine.servers import PostgresServer
from backup_engine.storage import Storage

PLAN = RetentionPolicy()  # the seed plan's table: 30 / 90 (Sunday) / 7 days


@dataclass
class SimulatedHistory:
    now: datetime
    backups: list[BaseBackupManifest]


def fixed_clock(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


@when(
    parsers.parse(
        "a base backup is taken every day for {days:d} days, each day after a marker is committed"
    ),
    target_fixture="history",
)
def daily_backups(
    repository: Storage,
    source_server: PostgresServer,
    markers: dict[str, Marker],
    backups_taken: list[BaseBackupManifest],
    days: int,
) -> SimulatedHistory:
    options = BaseBackupOptions(dsn=source_server.dsn())
    return simulate_days(repository, source_server, markers, backups_taken, days, options,
                         datetime.now(UTC))  # fmt: skip


def simulate_days(
    repository: Storage,
    server: PostgresServer,
    markers: dict[str, Marker],
    backups_taken: list[BaseBackupManifest],
    days: int,
    options: BaseBackupOptions,
    now: datetime,
) -> SimulatedHistory:
    """A backup a day for `days` days ending `now` (each on its simulated clock), each after a
    marker "day-N" is committed."""
    codec = get_codec("zstd")
    for day in range(days):
        name = f"day-{day}"
        # No restore point: its WAL switch would double the segments to archive.
        markers[name] = write_marker(server.dsn(), repository, name, restore_point=False)
        moment = now - timedelta(days=days - 1 - day)  # the simulated clock of that day
        backups_taken.append(
            take_base_backup(repository, codec, options, clock=fixed_clock(moment))
        )
    return SimulatedHistory(now + timedelta(minutes=1), list(backups_taken))


@when("expire runs with the plan's retention policy", target_fixture="expire_plan")
def run_expire(repository: Storage, history: SimulatedHistory) -> ExpirePlan:
    plan = plan_expire(repository, PLAN, history.now)
    apply_expire(repository, plan)
    return plan


@when(
    parsers.parse("expire runs keeping the newest {count:d} full backups"),
    target_fixture="expire_plan",
)
def run_expire_by_count(repository: Storage, history: SimulatedHistory, count: int) -> ExpirePlan:
    plan = plan_expire(repository, replace(PLAN, full_keep=count), history.now)
    apply_expire(repository, plan)
    return plan


@then(
    parsers.parse(
        "the kept base backups are the newest {count:d} and the one "
        "the {days:d}-day PITR window starts from"
    )
)
def kept_by_count(
    repository: Storage,
    history: SimulatedHistory,
    drill_record: ScenarioRecord,
    count: int,
    days: int,
) -> None:
    anchor = pitr_anchor(history.backups, history.now - timedelta(days=days))
    wanted = {b.backup_id for b in history.backups[-count:]} | {anchor.backup_id}
    kept = {b.backup_id for b in BASE_BACKUPS.list(repository).backups}
    drill_record.expect("base backups kept", sorted(wanted), sorted(kept))


@then(
    "the kept base backups are exactly the last 30 days and the Sunday backups of the last 90 days"
)
def kept_exactly(
    repository: Storage, history: SimulatedHistory, drill_record: ScenarioRecord
) -> None:
    def expected(backup: BaseBackupManifest) -> bool:
        age = history.now - backup.stop_time
        sunday = backup.stop_time.weekday() == 6
        return age <= timedelta(days=30) or (sunday and age <= timedelta(days=90))

    kept = {b.backup_id for b in BASE_BACKUPS.list(repository).backups}
    wanted = {b.backup_id for b in history.backups if expected(b)} | {history.backups[-1].backup_id}
    drill_record.expect("base backups kept", f"{len(wanted)}: the plan's table",
                        f"{len(kept)}: {len(kept - wanted)} not wanted, {len(wanted - kept)} gone",
                        kept == wanted)  # fmt: skip
    assert len(kept) < len(history.backups)


@then(parsers.parse("the WAL archive has no gap from the start of the {days:d}-day window"))
def no_gap(
    repository: Storage, history: SimulatedHistory, drill_record: ScenarioRecord, days: int
) -> None:
    backups = BASE_BACKUPS.list(repository).backups
    anchor = pitr_anchor(backups, history.now - timedelta(days=days))
    archive = read_timeline_tree(repository, anchor.wal_segment_size)
    end = archive.end_lsn(anchor.timeline)
    assert end is not None
    missing = archive.missing(anchor.timeline, anchor.start_lsn_value, end - 1)
    drill_record.expect(f"WAL segments missing in the {days}-day window", [], missing)
