"""The fleet plan as Temporal workflows: `RestoreDrillFleet` prepares the run, starts one child
workflow per target (at most `concurrency` at once, `per_repository` per repository) and seals
the report; `RestoreDrillTarget` drills each of its target's kinds as an activity.

An activity that dies with its worker (no heartbeat) or raises is retried with backoff on any
worker, `attempts` times in all; a drill that ran and failed is a result and never retried. The
workflow history is the audit trail: which plan (its text is in the input), which worker ran
what and when, every retry. Kept to what a workflow may do (no I/O, no clock, no randomness):
everything else is in temporal_work.py's activities.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

PREPARE, DRILL, SEAL = "fleet-prepare", "fleet-drill", "fleet-seal"
QUICK = timedelta(minutes=5)
ONCE_MORE = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5)


@workflow.defn(name="RestoreDrillTarget")
class TargetDrill:
    @workflow.run
    async def run(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        verdicts = []
        retry = RetryPolicy(initial_interval=timedelta(seconds=2), backoff_coefficient=2.0,
                            maximum_attempts=request["attempts"])  # fmt: skip
        for job in request["jobs"]:
            try:
                verdict = await workflow.execute_activity(
                    DRILL, {**request["common"], **job},
                    start_to_close_timeout=timedelta(seconds=job["timeout_seconds"] + 300),
                    heartbeat_timeout=timedelta(seconds=request["heartbeat_seconds"]),
                    retry_policy=retry,
                )  # fmt: skip
            except ActivityError as exc:  # every attempt failed to run: a result, with why
                cause = str(exc.cause) if exc.cause is not None else str(exc)
                verdict = {**job["failed"], "reason": f"could not run on any worker: {cause}",
                           "attempts": request["attempts"]}  # fmt: skip
            verdicts.append(verdict)
        return verdicts


@workflow.defn(name="RestoreDrillFleet")
class FleetRun:
    @workflow.run
    async def run(self, request: dict[str, Any]) -> dict[str, Any]:
        info = workflow.info()
        started = workflow.now().isoformat()
        prepared = await workflow.execute_activity(
            PREPARE, {**request, "run_id": info.run_id, "started": started},
            start_to_close_timeout=QUICK, retry_policy=ONCE_MORE,
        )  # fmt: skip
        slots = asyncio.Semaphore(prepared["concurrency"])
        per_repository: dict[str, asyncio.Semaphore] = {}

        async def target(entry: dict[str, Any]) -> list[dict[str, Any]]:
            repository = per_repository.setdefault(
                entry["repository"], asyncio.Semaphore(prepared["per_repository"]))  # fmt: skip
            async with slots, repository:
                result: list[dict[str, Any]] = await workflow.execute_child_workflow(
                    TargetDrill.run, {**entry, "common": prepared["common"]},
                    id=f"{info.workflow_id}/{entry['target']}",
                )  # fmt: skip
                return result

        results = await asyncio.gather(*(target(entry) for entry in prepared["targets"]))
        verdicts = [verdict for result in results for verdict in result]
        report: dict[str, Any] = await workflow.execute_activity(
            SEAL, {**prepared["common"], "verdicts": verdicts, "started": started,
                   "seed": prepared["seed"], "executor": prepared["executor"]},
            start_to_close_timeout=QUICK, retry_policy=ONCE_MORE,
        )  # fmt: skip
        return report
