"""What PostgreSQL itself says about a base backup, read from files inside its tar stream.

- `backup_label`: start LSN, start WAL file, start timeline, start time.
- `backup_manifest`: the WAL range needed to make the backup consistent (its end LSN).
- `global/pg_control`: the system identifier (readable here without superuser rights, which
  `pg_control_system()` would need).
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass

from backup_engine.errors import CommandFailed
from backup_engine.postgres.lsn import parse_lsn

LABEL_MEMBER = "backup_label"
MANIFEST_MEMBER = "backup_manifest"
CONTROL_MEMBER = "global/pg_control"


@dataclass(frozen=True)
class BackupFacts:
    start_lsn: int
    stop_lsn: int
    start_wal_file: str
    timeline: int
    system_identifier: str
    label: str


def _label_field(text: str, name: str) -> str:
    match = re.search(rf"^{re.escape(name)}: (.*)$", text, re.MULTILINE)
    if not match:
        raise CommandFailed(f"backup_label has no {name!r} line; is this a pg_basebackup stream?")
    return match.group(1).strip()


def system_identifier(pg_control: bytes) -> str:
    """pg_control starts with the uint64 system identifier in the server's byte order."""
    if len(pg_control) < 16:
        raise CommandFailed("global/pg_control in the backup stream is truncated")
    little = struct.unpack_from("<QI", pg_control)
    if 0 < little[1] < 100_000:  # pg_control_version (e.g. 1300) tells the byte order
        return str(little[0])
    return str(struct.unpack_from(">Q", pg_control)[0])


def read_backup_facts(members: dict[str, bytes]) -> BackupFacts:
    missing = [m for m in (LABEL_MEMBER, MANIFEST_MEMBER, CONTROL_MEMBER) if m not in members]
    if missing:
        raise CommandFailed(
            f"pg_basebackup output lacks {', '.join(missing)}",
            hint="the server must be PostgreSQL 13 or newer and the backup must not be aborted",
        )
    label = members[LABEL_MEMBER].decode()
    start = _label_field(label, "START WAL LOCATION")  # "0/2000028 (file 000000010000000000000002)"
    start_match = re.match(r"([0-9A-Fa-f]+/[0-9A-Fa-f]+) \(file ([0-9A-F]{24})\)", start)
    if not start_match:
        raise CommandFailed(f"cannot read START WAL LOCATION {start!r} in backup_label")
    manifest = json.loads(members[MANIFEST_MEMBER])
    ranges = manifest.get("WAL-Ranges") or []
    if not ranges:
        raise CommandFailed("backup_manifest has no WAL-Ranges")
    return BackupFacts(
        start_lsn=parse_lsn(start_match.group(1)),
        stop_lsn=parse_lsn(ranges[-1]["End-LSN"]),
        start_wal_file=start_match.group(2),
        timeline=int(_label_field(label, "START TIMELINE")),
        system_identifier=system_identifier(members[CONTROL_MEMBER]),
        label=_label_field(label, "LABEL"),
    )
