"""Where each drill's evidence goes: a directory of its own under the report root, never an
earlier run's; `latest` switched to it only once it is sealed; runs older than the kept days
pruned. A drill that cannot start leaves nothing behind.

    drill-report/
      20261206T031500Z-3f2a9c1e/   report.json, report.html, junit.xml, ..., SHA256SUMS
      20261207T031500Z-b81d04aa/
      latest -> 20261207T031500Z-b81d04aa
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from backup_engine.drill.report.sums import SUMS
from backup_engine.errors import UsageError

LATEST = "latest"
RUN_ID_ENV = "DRILL_RUN_ID"  # the run id the pytest plugin records: the same as the name's
RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_RUN_NAME = re.compile(r"^(\d{8}T\d{6}Z)-([0-9a-f]{8})$")
_STAMP = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class RunDir:
    path: Path
    run_id: str
    root: Path | None  # None: the operator named the directory itself (--report-dir)
    created: bool  # whether this run made the directory (so it may remove it again)

    def discard(self) -> None:
        """The drill could not start: remove what it wrote, so no run directory holds it."""
        if self.created:
            shutil.rmtree(self.path, ignore_errors=True)
        elif self.path.is_dir():
            for entry in self.path.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()


def new_run(
    root: Path | None,
    report_dir: Path | None,
    *,
    run_id: str | None = None,
    now: datetime | None = None,
) -> RunDir:
    """A fresh directory for one run: `report_dir` when given (absent or empty), else a new
    `<UTC time>-<run id>` under `root`. Made exclusively: two drills never share one."""
    run_id = run_id if run_id and RUN_ID.match(run_id) else uuid.uuid4().hex
    if report_dir is not None:
        path = report_dir.absolute()
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise UsageError(
                f"{path} already holds another run's evidence: a drill never writes over it",
                hint="each run needs a directory of its own: drop --report-dir (runs then go "
                "under --report-root, one directory each) or name a new one",
            )
        created = not path.exists()
        path.mkdir(parents=True, exist_ok=True)
        return RunDir(path, run_id, None, created)
    assert root is not None
    root = root.absolute()
    stamp = (now or datetime.now(UTC)).strftime(_STAMP)
    try:
        root.mkdir(parents=True, exist_ok=True)
        path = root / f"{stamp}-{run_id[:8]}"
        path.mkdir()
    except OSError as exc:
        raise UsageError(
            f"cannot make a run directory under {root}: {exc.strerror}",
            hint="choose a writable --report-root ([drill] report_root)",
        ) from exc
    return RunDir(path, run_id, root, True)


def point_latest(run: RunDir) -> str | None:
    """Switch `<root>/latest` to this sealed run (atomically: a reader sees the old run or the
    new one). A problem is returned as a line to show, never raised: the evidence stands."""
    if run.root is None or not (run.path / SUMS).is_file():
        return None
    link = run.root / LATEST
    if link.exists() and not link.is_symlink():
        return f"{link} is not a link (evidence of an earlier layout?): left as it is"
    temporary = run.root / f".{LATEST}-{run.run_id}"
    try:
        os.symlink(run.path.name, temporary)
        os.replace(temporary, link)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        return f"{link} not switched to this run: {exc.strerror}"
    return None


def run_time(path: Path) -> datetime | None:
    """When a run directory's run started, from its name; None for anything else."""
    match = _RUN_NAME.match(path.name)
    if not match or path.is_symlink() or not path.is_dir():
        return None
    return datetime.strptime(match.group(1), _STAMP).replace(tzinfo=UTC)


def prune(root: Path, keep_days: int, now: datetime | None = None) -> list[Path]:
    """Remove run directories older than `keep_days` under `root`: only directories named like
    a run, never the one `latest` points to, never anything else a person put there."""
    if keep_days <= 0 or not root.is_dir():
        return []
    cutoff = (now or datetime.now(UTC)) - timedelta(days=keep_days)
    latest = root / LATEST
    current = latest.resolve() if latest.is_symlink() else None
    removed = []
    for path in sorted(root.iterdir()):
        started = run_time(path)
        if started is None or started >= cutoff or path.resolve() == current:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed
