"""The `backup-engine` program. PostgreSQL runs it once per WAL segment: a call the spool of
asynchronous archiving or prefetching can answer is answered here, before anything heavy is
imported (click, botocore, the configuration); every other call runs the full command line."""

from __future__ import annotations

import sys


def _return_big_buffers() -> None:
    """Backups and restores pass megabyte buffers between threads. glibc's malloc raises its
    mmap threshold after such a buffer is freed, and then keeps later ones in per-thread heaps
    it does not give back: a restore measured 159 MB instead of 116. A fixed 1 MiB threshold
    keeps every big buffer mmapped, returned to the system when freed."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD; setting it turns the dynamic one off
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to tune
        pass


def main() -> None:
    from backup_engine.postgres.walspool import fast_answer

    code = fast_answer(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    _return_big_buffers()
    from backup_engine.cli import main as full

    full()
