"""Each fleet drill's scratch area (its TMPDIR): made per drill, owned by the process that runs
it (the local pool or a Temporal worker), removed when the drill ends. A worker killed with its
drills leaves areas whose owner is gone: the next drill on the machine stops the servers left
in them and removes them (the drill's own reaper, which looks inside them too)."""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import tempfile
from pathlib import Path

from backup_engine.servers.reaper import SCRATCH_PREFIX, claim, reap

FLEET_PREFIX = f"{SCRATCH_PREFIX}fleet-"
_PR_SET_PDEATHSIG = 1


def make_scratch() -> Path:
    scratch = Path(tempfile.mkdtemp(prefix=FLEET_PREFIX))
    scratch.chmod(0o755)  # servers run as the postgres user reach their data below it
    claim(scratch, "fleet")
    return scratch


def remove_scratch(scratch: Path) -> None:
    reap(scratch)  # what a stopped drill could not stop itself (its owner is gone by now)
    shutil.rmtree(scratch, ignore_errors=True)


def reap_abandoned(base: Path | None = None) -> int:
    """Scratch areas of drills whose owner died (a killed worker): their servers stopped, the
    areas removed, the drills' own areas inside them first. Returns how many."""
    return len(reap(base))


def die_with_parent() -> None:
    """In the drill's process, before exec: killed when the process that started it dies, so a
    worker killed mid-drill does not leave its drill running (Linux prctl; elsewhere no-op)."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
