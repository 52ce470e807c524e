"""Drills per hour for a fleet plan of 12 small targets (6 PostgreSQL, 6 Redis, real servers):
the local pool at concurrency 1, 2 and 4, and Temporal (a dev server) with 1 and 2 workers of
2 drills each, in one run; where the time goes (the restore itself against the rest of a
drill: starting its process and pytest, servers, the checklist, sealing evidence).

    .venv/bin/python benchmarks/fleet_throughput.py
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backup_engine.net import free_port  # noqa: E402
from tests.fleet_repositories import made_repositories  # noqa: E402

CLI = [sys.executable, "-m", "backup_engine", "fleet"]
TEMPORAL = str(Path(sys.executable).parent / "temporal")


def plan_file(where: Path, repositories: Path, address: str, queue: str) -> Path:
    lines = [f'[fleet]\nname = "bench"\nevidence = "{where / "evidence"}"\nconcurrency = 8\n'
             f'per_repository = 8\n[fleet.temporal]\naddress = "{address}"\n'
             f'task_queue = "{queue}"\n']  # fmt: skip
    for n in range(6):
        for kind, source in (("postgres", "orders"), ("redis", "cache")):
            name = f"{kind}-{n}"
            copy = repositories / f"bench-{name}"
            if not copy.exists():
                shutil.copytree(repositories / source, copy)
                subprocess.run(["chmod", "-R", "a+rX", str(copy)], check=True)
            (where / f"{name}.toml").write_text(f'[repository]\nurl = "file://{copy}"\n')
            lines.append(f'[[target]]\nname = "{name}"\nconfig = "{name}.toml"\n'
                         f'kinds = ["{kind}"]\nkeep_in_repository = false\n')  # fmt: skip
    path = where / "fleet.toml"
    path.write_text("\n".join(lines))
    return path


def summarise(label: str, report: dict, wall: float) -> None:
    results = report["results"]
    passed = sum(1 for r in results if r["status"] == "passed")
    drill = [r["seconds"] for r in results]
    rto = [r["rto_seconds"] for r in results if r["rto_seconds"] is not None]
    print(f"{label:34} {len(results):3} drills ({passed} passed) in {wall:6.1f} s: "
          f"{len(results) * 3600 / wall:6.0f} drills/h; a drill {statistics.mean(drill):5.1f} s "
          f"of which the restore (RTO) {statistics.mean(rto):4.1f} s; busy "
          f"{sum(drill) / wall:3.1f} drills at once on average", flush=True)  # fmt: skip


def local(where: Path, plan: Path, concurrency: int) -> None:
    started = time.monotonic()
    done = subprocess.run([*CLI, "run", str(plan), "--json", "--concurrency", str(concurrency)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    summarise(f"local pool, concurrency {concurrency}", json.loads(done.stdout),
              time.monotonic() - started)  # fmt: skip


def temporal(where: Path, repositories: Path, workers: int) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    server = subprocess.Popen([TEMPORAL, "server", "start-dev", "--headless", "--ip", "127.0.0.1",
                               "--port", str(port), "--http-port", str(free_port()),
                               "--metrics-port", str(free_port()), "--log-level", "error"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)  # fmt: skip
    time.sleep(3)
    queue = f"bench-{workers}"
    plan = plan_file(where, repositories, address, queue)
    procs = [subprocess.Popen([*CLI, "worker", "--address", address, "--task-queue", queue,
                               "--drills", "2"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for _ in range(workers)]  # fmt: skip
    try:
        started = time.monotonic()
        done = subprocess.run([*CLI, "run", str(plan), "--temporal", "--json"],
                              capture_output=True, text=True, check=False)  # fmt: skip
        summarise(f"Temporal, {workers} worker(s) x 2 drills", json.loads(done.stdout),
                  time.monotonic() - started)  # fmt: skip
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def main() -> None:
    with made_repositories() as repositories:
        where = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
        plan = plan_file(where, repositories, "127.0.0.1:1", "unused")
        print(f"12 targets (6 PostgreSQL, 6 Redis); {os.cpu_count()} cores")
        for concurrency in (1, 2, 4):
            local(where, plan, concurrency)
        for workers in (1, 2):
            temporal(where, repositories, workers)
        shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    main()
