"""The fleet's Temporal activities and the processes around them: `fleet worker` (runs drills
taken from the task queue), `fleet run --temporal` (starts a plan's workflow and waits for its
report) and `fleet schedule` (a Temporal Schedule from the plan's cron, time zone and start
window). Activities are idempotent: a retried seal finds the sealed report and returns it, so
nothing is reported twice."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.worker import Worker

from backup_engine.drill.fleet.plan import Plan, Target, TemporalSettings, parse_plan
from backup_engine.drill.fleet.pool import machine_capacity, plan_jobs, repository_of
from backup_engine.drill.fleet.target_run import Job, Verdict, failed_to_run, run_job
from backup_engine.drill.fleet.temporal_flow import DRILL, PREPARE, SEAL, FleetRun, TargetDrill
from backup_engine.errors import BackupEngineError

_STAMP = "%Y%m%dT%H%M%SZ"


def _plan(request: dict[str, Any]) -> Plan:
    return parse_plan(tomllib.loads(request["plan_text"]), Path(request["plan_file"]))


def request_for(plan: Plan, names: tuple[str, ...] = (), tags: tuple[str, ...] = (),
                seed: int | None = None) -> dict[str, Any]:  # fmt: skip
    """The workflow's input: the plan's text itself (the history records what ran), where it
    lives (relative paths in it), and which targets."""
    return {"plan_file": str(plan.source), "plan_text": plan.source.read_text(),
            "names": list(names), "tags": list(tags), "seed": seed}  # fmt: skip


def _repository_key(target: Target) -> str:
    """What the per-repository limit counts by: its URL, or (unreadable) the target itself,
    whose drill then fails with the reason."""
    try:
        return repository_of(target)
    except BackupEngineError:
        return target.name


def _target(plan: Plan, name: str) -> Target:
    return next(t for t in plan.targets if t.name == name)


@activity.defn(name=PREPARE)
def prepare(request: dict[str, Any]) -> dict[str, Any]:
    """Targets and their jobs, each target's repository (for the per-repository limit), the
    seed, and the run's evidence directory (named by the workflow run: a retry finds it)."""
    plan = _plan(request)
    targets = plan.select(tuple(request["names"]), tuple(request["tags"]))
    seed = request["seed"] if request["seed"] is not None else plan.seed
    if seed is None:
        seed = int(request["run_id"].replace("-", "")[:8], 16) & 0x7FFFFFFF
    started = datetime.fromisoformat(request["started"])
    run_dir = plan.evidence / f"{started.strftime(_STAMP)}-{request['run_id'].replace('-', '')[:8]}"
    run_dir.mkdir(parents=True, exist_ok=True)
    jobs = plan_jobs(targets, seed)
    entries = []
    for target in targets:
        mine = [job for job in jobs if job.target.name == target.name]
        entries.append({
            "target": target.name, "repository": _repository_key(target),
            "attempts": plan.temporal.attempts,
            "heartbeat_seconds": plan.temporal.heartbeat_timeout_seconds,
            "jobs": [{"target": job.target.name, "kind": job.kind, "seed": job.seed,
                      "timeout_seconds": target.timeout_seconds,
                      "failed": failed_to_run(job, "").to_dict()} for job in mine],
        })  # fmt: skip
    common = {"plan_file": request["plan_file"], "plan_text": request["plan_text"],
              "run_dir": str(run_dir), "run_id": request["run_id"]}  # fmt: skip
    concurrency = plan.concurrency or len(entries) or 1
    where = f"Temporal {plan.temporal.address}, queue {plan.temporal.task_queue}"
    return {"targets": entries, "common": common, "seed": seed, "concurrency": concurrency,
            "per_repository": plan.per_repository, "executor": where}  # fmt: skip


@activity.defn(name=DRILL)
def drill(request: dict[str, Any]) -> dict[str, Any]:
    """One target's drill of one kind on this worker, heartbeating while it runs; a
    cancellation (the workflow was cancelled) stops it and its servers."""
    plan = _plan(request)
    target = _target(plan, request["target"])
    job = Job(target, request["kind"], request["seed"])
    info = activity.info()
    run_dir = Path(request["run_dir"])
    marker = run_dir / "targets" / target.name / f"{job.kind}.worker"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{os.getpid()} {socket.gethostname()} attempt {info.attempt}\n")

    def beat() -> None:
        activity.heartbeat()
        if activity.is_cancelled():
            raise asyncio.CancelledError()

    verdict = run_job(job, run_dir, plan.signing_key, attempt=info.attempt, tick=beat)
    verdict.worker = f"{socket.gethostname()} pid {os.getpid()}"
    marker.unlink(missing_ok=True)
    return verdict.to_dict()


@activity.defn(name=SEAL)
def seal(request: dict[str, Any]) -> dict[str, Any]:
    """The fleet report, sealed and signed; when an earlier attempt sealed it, that one."""
    import json

    from backup_engine.drill.fleet.report import (
        FLEET_JSON,
        build_report,
        load_fleet_history,
        seal_run,
    )
    from backup_engine.drill.report.sums import SUMS
    from backup_engine.drill.runs import RunDir

    run_dir = Path(request["run_dir"])
    if (run_dir / SUMS).is_file() and (run_dir / FLEET_JSON).is_file():
        return dict(json.loads((run_dir / FLEET_JSON).read_text()))
    plan = _plan(request)
    verdicts = [Verdict(**v) for v in request["verdicts"]]
    history = load_fleet_history(plan.evidence, plan.name, skip=run_dir)
    report = build_report(plan, verdicts, history, run_id=request["run_id"],
                          started=datetime.fromisoformat(request["started"]),
                          seed=request["seed"], executor=request["executor"],
                          evidence=run_dir)  # fmt: skip
    seal_run(RunDir(run_dir, request["run_id"], plan.evidence, False), report, history,
             plan.signing_key, None)  # fmt: skip
    return report


@functools.cache
def _quiet_runtime() -> Any:
    from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

    silent = LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))
    return Runtime(telemetry=TelemetryConfig(logging=silent))


async def connect(temporal: TemporalSettings, *, quiet: bool = False) -> Client:
    """`quiet`: the SDK's own retry warnings not printed (a command that waits says once
    itself that the server is away); a worker keeps them."""
    runtime = _quiet_runtime() if quiet else None
    try:
        return await Client.connect(temporal.address, namespace=temporal.namespace,
                                    runtime=runtime)  # fmt: skip
    except RuntimeError as exc:  # the SDK's connection failure
        raise BackupEngineError(
            f"cannot reach Temporal at {temporal.address}: {exc}",
            hint="start it (temporal server start-dev), or set [fleet.temporal] address",
        ) from None


async def work(temporal: TemporalSettings, drills: int | None) -> None:
    """A worker: drills from the task queue, `drills` at once (default: what this machine
    takes), until interrupted. Any plan's workflows on that queue: a worker holds no plan."""
    client = await connect(temporal)
    capacity = drills or machine_capacity().drills
    # `drills` bounds every activity of this worker: preparing and sealing are short and come
    # before and after a run's drills
    with ThreadPoolExecutor(capacity, thread_name_prefix="drill") as pool:
        worker = Worker(
            client, task_queue=temporal.task_queue, workflows=[FleetRun, TargetDrill],
            activities=[prepare, drill, seal], activity_executor=pool,
            max_concurrent_activities=capacity,
            identity=f"{socket.gethostname()} pid {os.getpid()}",
        )  # fmt: skip
        await worker.run()


async def start_and_wait(plan: Plan, request: dict[str, Any]) -> dict[str, Any]:
    """Start the plan's workflow and wait for its report. Temporal going away meanwhile is
    waited out: the workflow goes on where it was when it comes back, and its report (sealed
    once) is the one returned."""
    from temporalio.client import WorkflowFailureError
    from temporalio.exceptions import CancelledError
    from temporalio.service import RPCError

    client = await connect(plan.temporal, quiet=True)
    stamp = datetime.now(UTC).strftime(_STAMP)
    handle = await client.start_workflow(FleetRun.run, request, id=f"fleet-{plan.name}-{stamp}",
                                         task_queue=plan.temporal.task_queue)  # fmt: skip
    pause = 1.0
    while True:
        try:
            result: dict[str, Any] = await handle.result()
            return result
        except WorkflowFailureError as exc:
            if isinstance(exc.cause, CancelledError):
                raise BackupEngineError(f"fleet workflow {handle.id} was cancelled: its drills "
                                        "were stopped, no report was sealed") from None  # fmt: skip
            raise BackupEngineError(f"fleet workflow {handle.id} failed: {exc.cause}") from None
        except RPCError as exc:  # the server went away: the run is kept in its history
            print(
                f"Temporal at {plan.temporal.address} unreachable ({exc.message}); "
                f"workflow {handle.id} goes on when it is back",
                file=sys.stderr,
            )
            await asyncio.sleep(pause)
            pause = min(pause * 2, 30.0)
            with contextlib.suppress(BackupEngineError):
                client = await connect(plan.temporal, quiet=True)
                handle = client.get_workflow_handle(handle.id)


async def schedule(plan: Plan) -> str:
    """Create the plan's schedule, or update it to the plan as it is now. Returns its id."""
    if plan.schedule is None:
        raise BackupEngineError(f"{plan.source} has no [fleet.schedule]",
                                hint='add [fleet.schedule] with cron = "0 3 * * *"')  # fmt: skip
    client = await connect(plan.temporal)
    schedule_id = f"fleet-{plan.name}"
    wanted = Schedule(
        action=ScheduleActionStartWorkflow(FleetRun.run, request_for(plan), id=schedule_id,
                                           task_queue=plan.temporal.task_queue),
        spec=ScheduleSpec(cron_expressions=[plan.schedule.cron.text],
                          time_zone_name=plan.schedule.timezone),
        policy=SchedulePolicy(
            catchup_window=timedelta(seconds=plan.schedule.start_window_seconds)),
    )  # fmt: skip
    try:
        await client.create_schedule(schedule_id, wanted)
    except ScheduleAlreadyRunningError:

        def update(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=wanted)

        await client.get_schedule_handle(schedule_id).update(update)
    return schedule_id
