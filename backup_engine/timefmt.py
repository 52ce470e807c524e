"""Times as manifests write them: ISO 8601 in UTC with a Z, always with a zone."""

from __future__ import annotations

import re
from datetime import UTC, datetime

BACKUP_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z(-[0-9]+)?$")  # what backup_id_for makes, -2 ...


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no timezone")
    return moment


def backup_id_for(moment: datetime) -> str:
    """Backup ids sort by time: 20261125T020000Z."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
