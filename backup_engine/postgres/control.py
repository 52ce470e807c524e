"""What a data directory's own pg_control says of its WAL segment size: the bound of what a
WAL file fetched from the repository may decompress to, known independently of the object.

pg_control's layout moves between major versions, but from `floatFormat` (the double
1234567.0 PostgreSQL writes to detect float format mismatches) on it is the same in 13 to 17:
blcksz, relseg_size, xlog_blcksz, then xlog_seg_size, four uint32 after the double."""

from __future__ import annotations

import struct
from pathlib import Path

FLOAT_FORMAT = struct.pack("<d", 1234567.0)
MIN_SEGMENT, MAX_SEGMENT = 1 << 20, 1 << 30  # what initdb --wal-segsize allows


def segment_size_of(data_dir: Path) -> int | None:
    """The cluster's WAL segment size in bytes, or None when pg_control cannot say."""
    try:
        with (data_dir / "global" / "pg_control").open("rb") as fh:
            head = fh.read(512)
    except OSError:
        return None
    at = head.find(FLOAT_FORMAT)
    if at < 0 or at % 8 or len(head) < at + 24:
        return None
    blcksz, _relseg, xlog_blcksz, seg_size = struct.unpack_from("<4I", head, at + 8)
    sane = all(v & (v - 1) == 0 for v in (blcksz, xlog_blcksz, seg_size))
    if not sane or not 1024 <= blcksz <= 32768 or not MIN_SEGMENT <= seg_size <= MAX_SEGMENT:
        return None
    return int(seg_size)


def data_dir_of(destination: Path) -> Path | None:
    """The data directory a restore_command writes into: PostgreSQL runs it there, with %p
    relative (pg_wal/RECOVERYXLOG); an absolute %p names pg_wal/ itself."""
    for candidate in (Path.cwd(), destination.absolute().parent.parent):
        if (candidate / "global" / "pg_control").is_file():
            return candidate
    return None
