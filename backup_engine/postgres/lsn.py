"""Log sequence numbers and WAL file names, as PostgreSQL spells them."""

from __future__ import annotations

import re

from backup_engine.errors import UsageError

_LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")


def parse_lsn(text: str) -> int:
    match = _LSN.match(text.strip())
    if not match:
        raise UsageError(
            f"invalid LSN {text!r}", hint="write it as PostgreSQL does, e.g. 0/16B3740"
        )
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def wal_file_name(timeline: int, lsn: int, segment_size: int, *, previous: bool = False) -> str:
    """The WAL segment holding `lsn` (`previous`: holding the byte just before it).

    PostgreSQL names the *end* of a backup with the previous-byte rule, so an end LSN that falls
    exactly on a segment boundary does not require the (not yet written) next segment.
    """
    position = lsn - 1 if previous and lsn > 0 else lsn
    segment = position // segment_size
    per_xlogid = 0x1_0000_0000 // segment_size
    return f"{timeline:08X}{segment // per_xlogid:08X}{segment % per_xlogid:08X}"
