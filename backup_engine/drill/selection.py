"""Which recovery point a drill of an existing repository restores: AWS Backup restore
testing's "latest within window" and "random within window".

A selection travels to the steps as `DRILL_BACKUP_SELECTION`: `latest`, `latest:DAYS` or
`random:DAYS:SEED`. A window with no backup in it fails the drill with that reason: it never
quietly drills an older backup than the plan asked for. The seed is recorded in the evidence,
so the same choice can be made again.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from backup_engine.errors import BackupNotFound, UsageError
from backup_engine.snapshots import Manifest

SELECTION_ENV = "DRILL_BACKUP_SELECTION"
MAX_WINDOW_DAYS = 365  # AWS Backup's bound for a restore-testing window


B = TypeVar("B", bound=Manifest)


def selection_value(pick: str, within_days: int | None, seed: int | None) -> str:
    """The value of SELECTION_ENV for `--pick` and `--within-days` (random: 30 days unless
    told) and the seed (chosen now when none is given)."""
    if within_days is not None and not 1 <= within_days <= MAX_WINDOW_DAYS:
        raise UsageError(f"a window of {within_days} days: 1 to {MAX_WINDOW_DAYS} days")
    if pick == "random":
        chosen = seed if seed is not None else random.SystemRandom().randrange(1 << 31)
        return f"random:{within_days or 30}:{chosen}"
    if pick == "latest":
        return f"latest:{within_days}" if within_days else "latest"
    raise UsageError(f"unknown selection {pick!r}: latest or random")


def choose_backup(
    backups: Sequence[B], selection: str, now: datetime, what: str = "base backup"
) -> tuple[B, str]:
    """The backup `selection` names among `backups` (oldest first), and how it was chosen."""
    if not backups:
        raise BackupNotFound(f"no complete {what} in the repository to drill")
    kind, _, rest = selection.partition(":")
    if kind == "random":
        days, _, seed = rest.partition(":")
        recent = _within(backups, int(days), now, what)
        chosen = random.Random(int(seed)).choice(recent)
        return (
            chosen,
            f"random among the {len(recent)} backups of the last {days} days (seed {seed})",
        )
    if rest:
        _within(backups, int(rest), now, what)
        return backups[-1], f"latest within {rest} days"
    return backups[-1], "latest"


def _within(backups: Sequence[B], days: int, now: datetime, what: str) -> list[B]:
    recent = [b for b in backups if now - b.stop_time <= timedelta(days=days)]
    if not recent:
        newest = backups[-1]
        age = (now - newest.stop_time) / timedelta(days=1)
        raise BackupNotFound(
            f"no {what} of the last {days} days to drill: the newest, {newest.backup_id}, "
            f"ended {age:.1f} days ago",
            hint="the backups have stopped: an older one is never drilled in its place",
        )
    return recent
