"""Recovery targets: what a point-in-time restore stops at, and the settings that say so; and
how a restored server recovers (`Recovery`: a target, or a standby)."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from backup_engine.errors import UsageError
from backup_engine.postgres.lsn import format_lsn, parse_lsn
from backup_engine.postgres.recovery_config import ARCHIVE_MODES

ACTIONS = ("promote", "pause", "shutdown")


@dataclass(frozen=True)
class RecoveryTarget:
    kind: str
    time: datetime | None = None
    lsn: int | None = None
    xid: int | None = None
    name: str | None = None
    action: str = "promote"
    inclusive: bool = True
    timeline: str = "latest"

    def describe(self) -> str:
        value = {
            "time": self.time.isoformat() if self.time else None,
            "lsn": format_lsn(self.lsn) if self.lsn is not None else None,
            "xid": str(self.xid),
            "name": repr(self.name),
        }.get(self.kind)
        if self.kind == "immediate":
            return "the end of the backup (immediate)"
        if self.kind == "latest":
            return "the end of the WAL archive (latest)"
        return f"{self.kind} {value}"

    def settings(self) -> dict[str, str]:
        """postgresql.conf recovery settings for this target (restore_command comes apart)."""
        settings: dict[str, str] = {}
        if self.kind == "time" and self.time is not None:
            settings["recovery_target_time"] = self.time.astimezone(UTC).isoformat(sep=" ")
        elif self.kind == "lsn" and self.lsn is not None:
            settings["recovery_target_lsn"] = format_lsn(self.lsn)
        elif self.kind == "xid":
            settings["recovery_target_xid"] = str(self.xid)
        elif self.kind == "name" and self.name is not None:
            settings["recovery_target_name"] = self.name
        elif self.kind == "immediate":
            settings["recovery_target"] = "immediate"
        if self.kind != "latest":
            settings["recovery_target_action"] = self.action
        if self.kind in ("time", "lsn", "xid"):
            settings["recovery_target_inclusive"] = "on" if self.inclusive else "off"
        settings["recovery_target_timeline"] = self.timeline
        return settings


MAX_TIMELINE = 0xFFFFFFFF
MAX_XID = (1 << 64) - 1  # 64-bit, epoch included, as pg_current_xact_id() shows it
_DIGITS = re.compile(r"^[0-9]{1,20}$")


def _number(text: str, what: str, *, low: int, high: int) -> int:
    """A decimal number in PostgreSQL's range for `what`, or one clear refusal."""
    value = int(text) if _DIGITS.match(text) else None
    if value is None or not low <= value <= high:
        raise UsageError(
            f"{what} {text!r} is not a number from {low} to {high}",
            hint="write it in decimal digits, as PostgreSQL shows it",
        )
    return value


def parse_target_time(text: str) -> datetime:
    """ISO 8601 or PostgreSQL style; a time without a zone is taken as UTC."""
    cleaned = re.sub(r"(\d)T(\d)", r"\1 \2", text.strip())
    cleaned = re.sub(r"\s*(UTC|Z)$", "+00:00", cleaned)
    cleaned = re.sub(r"([+-]\d{2})$", r"\1:00", cleaned)  # "+02" -> "+02:00"
    try:
        moment = datetime.fromisoformat(cleaned)
    except ValueError:
        raise UsageError(
            f"cannot read the target time {text!r}",
            hint='write it like "2026-11-25 14:30:00+00" (a time without a zone is UTC)',
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_target(
    *,
    time: str | None = None,
    lsn: str | None = None,
    xid: str | None = None,
    name: str | None = None,
    target: str | None = None,
    action: str = "promote",
    inclusive: bool = True,
    timeline: str = "latest",
) -> RecoveryTarget | None:
    """Build a target from the restore options; None means a plain restore of the backup."""
    given = {
        k: v
        for k, v in {"--target-time": time, "--target-lsn": lsn, "--target-xid": xid,
                     "--target-name": name, "--target": target}.items()
        if v is not None
    }  # fmt: skip
    if len(given) > 1:
        raise UsageError(f"give one recovery target, not {' and '.join(given)}")
    if action not in ACTIONS:
        raise UsageError(
            f"unknown target action {action!r}", hint=f"use one of: {', '.join(ACTIONS)}"
        )
    if timeline not in ("latest", "current"):
        timeline = str(_number(timeline, "target timeline", low=1, high=MAX_TIMELINE))
    base = RecoveryTarget("latest", action=action, inclusive=inclusive, timeline=timeline)
    if time is not None:
        return replace(base, kind="time", time=parse_target_time(time))
    if lsn is not None:
        return replace(base, kind="lsn", lsn=parse_lsn(lsn))
    if xid is not None:
        return replace(base, kind="xid", xid=_number(xid, "transaction id", low=3, high=MAX_XID))
    if name is not None:
        if not name or len(name.encode()) > 63 or "\0" in name:
            raise UsageError("a restore point name has 1 to 63 bytes")
        return replace(base, kind="name", name=name)
    if target is not None:
        if target not in ("immediate", "latest"):
            raise UsageError(f"--target is {target!r}", hint="use immediate or latest")
        return replace(base, kind=target)
    return None


@dataclass(frozen=True)
class Recovery:
    """How the restored server recovers: to `target` (None: the end of the archive), fetching
    WAL with `restore_command`; `archive_mode` "off" (default: a restored copy never archives
    into its source's repository) or "preserve" (the operator makes it the new primary)."""

    restore_command: str
    target: RecoveryTarget | None = None
    archive_mode: str = "off"
    # A standby (standby.signal): replays the archive, then streams from `primary_conninfo`
    # (the operator's; never the backup's, whose settings are removed) and never promotes.
    standby: bool = False
    primary_conninfo: str | None = None

    def __post_init__(self) -> None:
        if self.archive_mode not in ARCHIVE_MODES:
            raise UsageError(
                f"archive mode {self.archive_mode!r}", hint=f"use {' or '.join(ARCHIVE_MODES)}"
            )
        if self.standby and self.target is not None:
            raise UsageError(
                "a standby follows its primary to the end of the WAL: it takes no recovery target",
                hint="drop the --target options, or restore without --standby to a point in time",
            )
        if self.primary_conninfo is not None and not self.standby:
            raise UsageError("--primary-conninfo is for a standby", hint="add --standby")
