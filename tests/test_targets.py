from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backup_engine.errors import CorruptObject, UsageError
from backup_engine.postgres.recovery_config import (
    RECOVERY_SIGNAL,
    conf_quote,
    tool_command,
    write_recovery_config,
)
from backup_engine.postgres.targets import RecoveryTarget, parse_target, parse_target_time


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-25 14:30:00", datetime(2026, 11, 25, 14, 30, tzinfo=UTC)),
        ("2026-11-25T14:30:00Z", datetime(2026, 11, 25, 14, 30, tzinfo=UTC)),
        ("2026-11-25 14:30:00 UTC", datetime(2026, 11, 25, 14, 30, tzinfo=UTC)),
        ("2026-11-25 16:30:00+02", datetime(2026, 11, 25, 14, 30, tzinfo=UTC)),
        ("2026-11-25 16:30:00.25+02:00", datetime(2026, 11, 25, 14, 30, 0, 250000, tzinfo=UTC)),
    ],
)
def test_target_times_in_the_forms_people_write(text: str, expected: datetime) -> None:
    assert parse_target_time(text) == expected


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "14:30", ""])
def test_unreadable_target_times(text: str) -> None:
    with pytest.raises(UsageError, match="target time"):
        parse_target_time(text)


@given(st.datetimes(timezones=st.just(UTC)))
def test_written_target_time_reads_back(moment: datetime) -> None:
    target = RecoveryTarget("time", time=moment)
    written = target.settings()["recovery_target_time"]
    assert parse_target_time(written) == moment


def test_no_target_is_a_plain_restore() -> None:
    assert parse_target() is None


def test_only_one_target() -> None:
    with pytest.raises(UsageError, match="--target-time and --target-lsn"):
        parse_target(time="2026-01-01 00:00:00", lsn="0/1")


@pytest.mark.parametrize(
    ("kwargs", "settings"),
    [
        (
            {"time": "2026-11-25 14:30:00+00"},
            {
                "recovery_target_time": "2026-11-25 14:30:00+00:00",
                "recovery_target_action": "promote",
                "recovery_target_inclusive": "on",
                "recovery_target_timeline": "latest",
            },
        ),
        (
            {"lsn": "0/16B3740", "action": "pause", "inclusive": False},
            {
                "recovery_target_lsn": "0/16B3740",
                "recovery_target_action": "pause",
                "recovery_target_inclusive": "off",
                "recovery_target_timeline": "latest",
            },
        ),
        (
            {"xid": "1234", "timeline": "current"},
            {
                "recovery_target_xid": "1234",
                "recovery_target_action": "promote",
                "recovery_target_inclusive": "on",
                "recovery_target_timeline": "current",
            },
        ),
        (
            {"name": "before-upgrade", "action": "shutdown"},
            {
                "recovery_target_name": "before-upgrade",
                "recovery_target_action": "shutdown",
                "recovery_target_timeline": "latest",
            },
        ),
        (
            {"target": "immediate"},
            {
                "recovery_target": "immediate",
                "recovery_target_action": "promote",
                "recovery_target_timeline": "latest",
            },
        ),
        ({"target": "latest"}, {"recovery_target_timeline": "latest"}),
    ],
)
def test_recovery_settings_for_each_target(
    kwargs: dict[str, object], settings: dict[str, str]
) -> None:
    target = parse_target(**kwargs)  # type: ignore[arg-type]
    assert target is not None
    assert target.settings() == settings


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"xid": "12a"}, "not a number"),
        ({"lsn": "nope"}, "invalid LSN"),
        ({"name": "x" * 64}, "1 to 63 bytes"),
        ({"target": "soon"}, "immediate or latest"),
        ({"time": "2026-01-01", "action": "explode"}, "unknown target action"),
        ({"time": "2026-01-01", "timeline": "newest"}, "target timeline 'newest' is not"),
        ({"xid": "\u00b2"}, "not a number from 3"),  # str.isdigit() says yes; int() says no
        ({"xid": "1" * 26}, "not a number from 3"),
        ({"xid": "2"}, "not a number from 3"),  # 0-2 are never a transaction's id
        ({"time": "2026-01-01", "timeline": "\u00b2"}, "not a number from 1"),
        ({"time": "2026-01-01", "timeline": "0"}, "not a number from 1"),
        ({"time": "2026-01-01", "timeline": str(1 << 32)}, "not a number from 1"),
        ({"name": "\u00e9" * 32}, "1 to 63 bytes"),
    ],
)
def test_bad_target_options(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_target(**kwargs)  # type: ignore[arg-type]


def test_recovery_config_is_appended_and_signal_created(tmp_path: Path) -> None:
    (tmp_path / "postgresql.auto.conf").write_text("work_mem = '4MB'\n")
    target = parse_target(name="it's fine")
    assert target is not None
    command = tool_command(["pg", "wal-fetch", "%f", "%p"], repo_url="s3://bucket/my prefix")
    changes = write_recovery_config(
        tmp_path, target.settings(), restore_command=command, archive_mode="off",
        note="Removed", comment="test",
    )  # fmt: skip
    text = (tmp_path / "postgresql.auto.conf").read_text()
    assert text.startswith("work_mem = '4MB'\n")
    assert "recovery_target_name = 'it''s fine'\n" in text
    assert f"restore_command = {conf_quote(command)}\n" in text
    assert "archive_mode = 'off'\n" in text
    assert "'s3://bucket/my prefix'" in command and command.endswith("pg wal-fetch %f %p")
    assert (tmp_path / RECOVERY_SIGNAL).exists()
    assert changes.removed == ()


def test_recovery_settings_from_the_past_are_removed(tmp_path: Path) -> None:
    """A backup of a server that was itself restored to a point in time carries its old target;
    the new restore comments it out and resets every other target explicitly."""
    (tmp_path / "postgresql.auto.conf").write_text(
        "work_mem = '4MB'\nrecovery_target_time = '2026-01-01 00:00:00+00'\n"
        "Restore_Command='old'\nrecovery_target_action = 'promote'\n"
    )
    (tmp_path / "postgresql.conf").write_text("primary_conninfo = 'host=old'\nport = 5432\n")
    for name in ("standby.signal", "recovery.conf"):
        (tmp_path / name).write_text("")
    target = parse_target(lsn="0/3000000")
    assert target is not None
    changes = write_recovery_config(
        tmp_path, target.settings(), restore_command="fetch", archive_mode="preserve",
        note="Removed by test", comment="test",
    )  # fmt: skip
    auto = (tmp_path / "postgresql.auto.conf").read_text()
    assert "# Removed by test: recovery_target_time = '2026-01-01 00:00:00+00'\n" in auto
    assert "# Removed by test: Restore_Command='old'\n" in auto
    assert "recovery_target_time = ''\n" in auto and "recovery_target_lsn = '0/3000000'\n" in auto
    assert "archive_mode" not in auto
    conf = (tmp_path / "postgresql.conf").read_text()
    assert conf == "# Removed by test: primary_conninfo = 'host=old'\nport = 5432\n"
    assert len(changes.removed) == 4
    assert set(changes.files_removed) == {"standby.signal", "recovery.conf"}
    assert not (tmp_path / "standby.signal").exists()
    assert (tmp_path / RECOVERY_SIGNAL).exists()
    # Parsed the way PostgreSQL parses it, only one target is left with a value.
    live = {}
    for line in auto.splitlines():
        if line and not line.startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            live[name.strip().lower()] = value.strip()
    targets = {k: v for k, v in live.items() if k.startswith("recovery_target") and v != "''"}
    assert set(targets) == {"recovery_target_lsn", "recovery_target_action",
                            "recovery_target_inclusive", "recovery_target_timeline"}  # fmt: skip


def test_a_linked_auto_conf_is_never_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "outside.conf"
    outside.write_text("x = 1\n")
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    (pgdata / "postgresql.auto.conf").symlink_to(outside)
    with pytest.raises(CorruptObject, match="symbolic link"):
        write_recovery_config(
            pgdata, {}, restore_command="x", archive_mode="off", note="n", comment="c"
        )
    assert outside.read_text() == "x = 1\n"


def test_target_time_keeps_its_instant_across_zones() -> None:
    local = datetime(2026, 11, 25, 16, 30, tzinfo=timezone(timedelta(hours=2)))
    assert RecoveryTarget("time", time=local).settings()["recovery_target_time"] == (
        "2026-11-25 14:30:00+00:00"
    )
