"""A drill killed mid-scenario (what a CI job's timeout does) leaves its servers running; the
next drill, or `drill cleanup`, stops them and removes their scratch areas. Real servers, a
real SIGKILL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from backup_engine.servers.reaper import OWNER_FILE, orphans, reap, start_ticks

pytestmark = pytest.mark.postgres

# A drill's fixtures in miniature: a PostgreSQL and a Redis server started, then killed.
VICTIM = """
import sys, time
from backup_engine.servers import LocalPostgresBackend
from backup_engine.servers.local_redis import LocalRedisBackend
pg = LocalPostgresBackend()
server = pg.create()
redis = LocalRedisBackend()
cache = redis.create()
print(pg.root, redis._scratch.root, server.data_dir, flush=True)
time.sleep(600)
"""


def _pid_of(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().splitlines()[0])


def test_the_servers_of_a_killed_drill_are_stopped_and_removed(tmp_path: Path) -> None:
    victim = subprocess.Popen([sys.executable, "-c", VICTIM], stdout=subprocess.PIPE, text=True)
    assert victim.stdout is not None
    pg_root, redis_root, data_dir = (Path(p) for p in victim.stdout.readline().split())
    postmaster = _pid_of(data_dir)
    redis_pid = int((redis_root / "data1" / "redis.pid").read_text().split()[0])
    assert start_ticks(postmaster) and start_ticks(redis_pid)
    mine = {pg_root, redis_root}
    assert not {root for root, _ in orphans()} & mine  # its owner lives: nothing to reap

    victim.send_signal(signal.SIGKILL)  # no teardown runs
    victim.wait()
    assert start_ticks(postmaster) is not None, "PostgreSQL should have outlived the drill"
    assert {root for root, _ in orphans()} >= mine
    dry = subprocess.run([sys.executable, "-m", "backup_engine", "drill", "cleanup", "--dry-run"],
                         capture_output=True, text=True, check=False, timeout=60)  # fmt: skip
    assert dry.returncode == 0 and str(pg_root) in dry.stdout and pg_root.exists()

    reaped = [r for r in reap() if r.root in mine]
    assert sorted(r.stopped for r in reaped) == [1, 1], reaped
    assert all(f"drill process {victim.pid} (gone)" in r.describe() for r in reaped)
    deadline = time.monotonic() + 15
    while (start_ticks(postmaster) or start_ticks(redis_pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert start_ticks(postmaster) is None and start_ticks(redis_pid) is None
    assert not pg_root.exists() and not redis_root.exists()


def test_an_area_whose_owner_lives_or_is_unknown_is_never_touched(tmp_path: Path) -> None:
    live = tmp_path / "restore-drill-pg-live"
    live.mkdir()
    (live / OWNER_FILE).write_text(json.dumps({"pid": os.getpid(), "start_ticks":
                                               start_ticks(os.getpid())}))  # fmt: skip
    unknown = tmp_path / "restore-drill-pg-unknown"  # no owner recorded: not ours to judge
    unknown.mkdir()
    recycled = tmp_path / "restore-drill-pg-recycled"  # our pid, another process's start
    recycled.mkdir()
    (recycled / OWNER_FILE).write_text(json.dumps({"pid": os.getpid(), "start_ticks": 1}))
    assert orphans(tmp_path) == [(recycled, os.getpid())]
    assert [r.root for r in reap(tmp_path)] == [recycled]
    assert live.exists() and unknown.exists() and not recycled.exists()
    assert Path(tempfile.gettempdir()).exists()


def test_a_planted_area_never_makes_a_drill_signal_or_delete(tmp_path: Path) -> None:
    """Anyone may create /tmp/restore-drill-x: an owner file not written by this user is not
    ours to judge, and a postmaster.pid that names a process not running in that directory
    (a production server, anything) is never signalled."""
    victim = subprocess.Popen(["sleep", "60"])
    try:
        forged = tmp_path / "restore-drill-pg-forged"
        (forged / "data1").mkdir(parents=True)
        (forged / OWNER_FILE).write_text(json.dumps({"pid": 2**22 + 7, "start_ticks": 1}))
        (forged / "data1" / "postmaster.pid").write_text(f"{victim.pid}\n{forged / 'data1'}\n")
        (forged / "data1" / "redis.pid").write_text(f"{victim.pid}\n")
        if os.geteuid() == 0:  # another user's owner file: left alone whatever it says
            shutil.chown(forged / OWNER_FILE, "postgres")
            assert orphans(tmp_path) == [] and forged.exists()
            shutil.chown(forged / OWNER_FILE, "root")
            shutil.chown(forged / "data1" / "redis.pid", "postgres")
        reaped = reap(tmp_path)  # ours, and its owner is gone: removed, but nothing signalled
        assert [r.stopped for r in reaped] == ([0] if os.geteuid() == 0 else [1])
        if os.geteuid() == 0:
            assert victim.poll() is None, "a process named by a forged pid file was signalled"
    finally:
        victim.kill()
        victim.wait()
