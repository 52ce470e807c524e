"""The embedded default: a plan's drills run on this machine, several at once within its
cores, memory and scratch disk, at most `per_repository` reading one repository at once. Each
drill is its own process with its own scratch area (target_run.py); a drill that fails or hangs
never stops the others."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from backup_engine.drill.fleet.plan import Plan, Target
from backup_engine.drill.fleet.target_run import Job, Verdict, failed_to_run, run_job
from backup_engine.errors import BackupEngineError
from backup_engine.urls import redact

DRILL_MEMORY = 1 << 30  # a throwaway PostgreSQL with its restore and checks, with room
DRILL_DISK = 2 << 30


@dataclass(frozen=True)
class Capacity:
    cores: int
    memory: int | None
    disk: int

    @property
    def drills(self) -> int:
        """How many drills this machine takes at once."""
        limits = [self.cores, self.disk // DRILL_DISK]
        if self.memory is not None:
            limits.append(self.memory // DRILL_MEMORY)
        return max(1, min(limits))


def machine_capacity() -> Capacity:
    memory = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                memory = int(line.split()[1]) * 1024
    except OSError:
        pass
    disk = shutil.disk_usage(tempfile.gettempdir()).free
    return Capacity(os.cpu_count() or 1, memory, disk)


def repository_of(target: Target) -> str:
    """The target's repository URL (credentials never shown); BackupEngineError naming why it
    cannot be read from the target's configuration."""
    from backup_engine.config import load_settings

    settings = load_settings(target.config, env={}, stanza=target.stanza)
    if not settings.repository.url:
        raise BackupEngineError(f"{target.config} names no repository")
    return redact(settings.repository.url)


def plan_jobs(targets: list[Target], seed: int) -> list[Job]:
    """One job per target and kind, in plan order; each random selection's seed drawn from the
    run's seed, so the run's seed alone makes every choice again."""
    draw = random.Random(seed)
    return [Job(t, kind, draw.randrange(1 << 31)) for t in targets for kind in t.kinds]


def run_pool(
    plan: Plan,
    jobs: list[Job],
    run_dir: Path,
    repositories: dict[str, str],
    *,
    concurrency: int,
    on_done: Callable[[Verdict], None] = lambda v: None,
) -> list[Verdict]:
    """Every job, `concurrency` at once and at most `plan.per_repository` per repository
    (`repositories`: target name -> its repository url); verdicts in plan order."""
    lock = threading.Condition()
    pending = list(jobs)
    busy: dict[str, int] = {}
    verdicts: dict[int, Verdict] = {}

    def next_job() -> tuple[int, Job] | None:
        with lock:
            while True:
                if not pending:
                    return None
                for job in pending:
                    where = repositories.get(job.target.name, job.target.name)
                    if busy.get(where, 0) < plan.per_repository:
                        pending.remove(job)
                        busy[where] = busy.get(where, 0) + 1
                        return jobs.index(job), job
                lock.wait()

    def worker() -> None:
        while (taken := next_job()) is not None:
            index, job = taken
            try:
                verdict = run_job(job, run_dir, plan.signing_key)
            except Exception as exc:  # noqa: BLE001 - one target's trouble never stops the rest
                verdict = failed_to_run(job, f"{type(exc).__name__}: {exc}")
            finally:
                with lock:
                    where = repositories.get(job.target.name, job.target.name)
                    busy[where] -= 1
                    lock.notify_all()
            verdicts[index] = verdict
            on_done(verdict)

    threads = [threading.Thread(target=worker, name=f"fleet-{n}") for n in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [verdicts[i] for i in sorted(verdicts)]
