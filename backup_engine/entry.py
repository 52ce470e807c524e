"""The `backup-engine` program. PostgreSQL runs it once per WAL segment: a call the spool of
asynchronous archiving or prefetching can answer is answered here, before anything heavy is
imported (click, boto3, the configuration); every other call runs the full command line."""

from __future__ import annotations

import sys


def main() -> None:
    from backup_engine.postgres.walspool import fast_answer

    code = fast_answer(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from backup_engine.cli import main as full

    full()
