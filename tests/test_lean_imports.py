"""A restore has no use for psycopg (13 MB with asyncio, a quarter of its memory from S3): the
modules a restore and a trial restore run must not import it."""

from __future__ import annotations

import subprocess
import sys


def test_restore_and_verify_do_not_import_psycopg() -> None:
    code = (
        "import sys\n"
        "import backup_engine.cli, backup_engine.commands.restore_report\n"
        "import backup_engine.postgres.restore, backup_engine.postgres.verify\n"
        "import backup_engine.postgres.file_checksums\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('psycopg', 'asyncio')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
