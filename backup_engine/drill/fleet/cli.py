"""`backup-engine fleet check PLAN` and `backup-engine fleet run PLAN`: a restore-testing plan
for many databases, checked, then run on this machine (the local pool)."""

from __future__ import annotations

import contextlib
import os
import random
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click

from backup_engine.commands.output import emit_json, emit_table
from backup_engine.drill.fleet.plan import Plan, Target, load_plan
from backup_engine.drill.fleet.pool import repository_of
from backup_engine.errors import BackupEngineError, IntegrityError, UsageError

plan_argument = click.argument("plan_file", metavar="PLAN", type=click.Path(path_type=Path))


@click.group()
def fleet() -> None:
    """Restore-testing plans for many databases: fleet check, fleet run."""


def _candidates(target: Target, kind: str, now: datetime) -> str:
    """What the drill would choose from: the backups of the window, and the newest's age."""
    from datetime import timedelta

    from backup_engine.config import load_settings
    from backup_engine.kinds import BY_NAME

    storage = load_settings(target.config, env={}, stanza=target.stanza).open_storage()
    storage.check()
    backups = BY_NAME[kind].catalog.list(storage).backups
    if not backups:
        return f"no {BY_NAME[kind].what} to drill"
    days = target.within_days or (30 if target.selection == "random" else None)
    inside = [b for b in backups if days is None or now - b.stop_time <= timedelta(days=days)]
    newest = (now - backups[-1].stop_time).total_seconds() / 3600
    if not inside:
        return f"none within {days} days (the newest is {newest:.1f} h old): the drill fails"
    if target.selection == "random":
        return f"one of {len(inside)} backups of the last {days} days, at random"
    return f"{backups[-1].backup_id} ({newest:.1f} h old)"


@fleet.command()
@plan_argument
@click.option("--offline", is_flag=True, help="Only read the plan and the targets' "
              "configurations; do not reach the repositories.")  # fmt: skip
@click.option("--json", "json_output", is_flag=True, help="Print JSON for machines.")
def check(plan_file: Path, offline: bool, json_output: bool) -> None:
    """Validate a plan and say what it would run: each target's repository and the recovery
    point it would drill, how many at once, and when it runs next. Exit 1 when a target's
    configuration or repository cannot be used."""
    from backup_engine.drill.fleet.pool import machine_capacity

    plan = load_plan(plan_file)
    now = datetime.now(UTC)
    rows, problems = [], 0
    for target in plan.targets:
        for kind in target.kinds:
            row: dict[str, Any] = {"target": target.name, "kind": kind, "tags": list(target.tags),
                                   "selection": _selection(target)}  # fmt: skip
            try:
                row["repository"] = repository_of(target)
                row["would_drill"] = "not looked at (--offline)" if offline else _candidates(
                    target, kind, now)  # fmt: skip
            except BackupEngineError as exc:
                row.setdefault("repository", "?")
                row["problem"] = exc.one_line()
                problems += 1
            rows.append(row)
    capacity = machine_capacity()
    concurrency = plan.concurrency or capacity.drills
    nxt = None
    if plan.schedule is not None:
        when = plan.schedule.cron.next_after(now, plan.schedule.zone)
        nxt = when.isoformat() if when else None
    summary = {"plan": plan.name, "targets": len(plan.targets), "drills": len(rows),
               "concurrency": concurrency, "per_repository": plan.per_repository,
               "evidence": str(plan.evidence), "next_run": nxt, "problems": problems,
               "rows": rows}  # fmt: skip
    if json_output:
        emit_json(summary)
    else:
        emit_table(("TARGET", "KIND", "REPOSITORY", "SELECTION", "WOULD DRILL"), [
            (r["target"], r["kind"], r["repository"], r["selection"],
             r.get("problem") or r["would_drill"]) for r in rows])  # fmt: skip
        machine = f"this machine takes {capacity.drills}" if not plan.concurrency else "the plan's"
        click.echo(f"plan {plan.name}: {len(plan.targets)} targets, {len(rows)} drills, "
                   f"{concurrency} at once ({machine}), {plan.per_repository} per repository; "
                   f"evidence under {plan.evidence}")  # fmt: skip
        if plan.schedule is not None:
            click.echo(f"schedule: {plan.schedule.cron.text} ({plan.schedule.timezone}), "
                       f"next run {nxt or 'never (the expression matches no date)'}")  # fmt: skip
    if problems:
        raise SystemExit(1)


def _selection(target: Target) -> str:
    window = f" within {target.within_days} days" if target.within_days else ""
    return f"{target.selection}{window}"


@fleet.command()
@plan_argument
@click.option("--target", "names", multiple=True, help="Only this target (repeatable).")
@click.option("--tag", "tags", multiple=True, help="Only targets with this tag (repeatable).")
@click.option("--concurrency", type=click.IntRange(1, 64), help="Drills at once [default: "
              "the plan's, or what this machine's cores, memory and disk allow].")  # fmt: skip
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), help="Seed of every random "
              "selection, recorded in the report [default: the plan's, or a new one].")  # fmt: skip
@click.option("--metrics-file", type=click.Path(path_type=Path, dir_okay=False),
              help="Also write the per-target Prometheus metrics here.")  # fmt: skip
@click.option("--temporal", "on_temporal", is_flag=True, help="Run it on Temporal (fleet worker "
              "processes take the drills) and wait for its report, instead of here.")  # fmt: skip
@click.option("--address", envvar="TEMPORAL_ADDRESS", help="With --temporal: the frontend "
              "[default: the plan's [fleet.temporal] address].")  # fmt: skip
@click.option("--json", "json_output", is_flag=True, help="Print the fleet report as JSON.")
def run(
    plan_file: Path,
    names: tuple[str, ...],
    tags: tuple[str, ...],
    concurrency: int | None,
    seed: int | None,
    metrics_file: Path | None,
    on_temporal: bool,
    address: str | None,
    json_output: bool,
) -> None:
    """Drill every target of the plan on this machine, several at once; a sealed, signed fleet
    report under the plan's evidence directory. Exit 0 when every drill passed and no target
    is stale, 1 otherwise."""
    from backup_engine.drill.fleet.pool import machine_capacity, plan_jobs, run_pool
    from backup_engine.drill.fleet.report import build_report, load_fleet_history, seal_run
    from backup_engine.drill.runs import new_run

    plan = load_plan(plan_file)
    targets = plan.select(names, tags)
    key_file = _signing_key(plan)
    if on_temporal:
        import asyncio

        temporal = _temporal_work()
        plan = _temporal(plan, address)
        request = temporal.request_for(plan, names, tags, seed)
        _leave_after(lambda: _conclude(asyncio.run(temporal.start_and_wait(plan, request)),
                                       json_output))  # fmt: skip
    seed = seed if seed is not None else plan.seed
    seed = seed if seed is not None else random.SystemRandom().randrange(1 << 31)
    jobs = plan_jobs(targets, seed)
    repositories = {}
    for target in targets:
        with contextlib.suppress(BackupEngineError):  # its drill fails with the reason
            repositories[target.name] = repository_of(target)
    concurrency = concurrency or plan.concurrency or machine_capacity().drills
    started = datetime.now(UTC)
    run_dir = new_run(plan.evidence, None, run_id=uuid.uuid4().hex, now=started)
    if not json_output:
        click.echo(f"fleet {plan.name}: {len(jobs)} drills of {len(targets)} targets, "
                   f"{concurrency} at once, seed {seed}; evidence: {run_dir.path}")  # fmt: skip

    def said(verdict: Any) -> None:
        if not json_output:
            click.echo(_line(verdict))

    verdicts = run_pool(replace_key(plan, key_file), jobs, run_dir.path, repositories,
                        concurrency=concurrency, on_done=said)  # fmt: skip
    history = load_fleet_history(plan.evidence, plan.name, skip=run_dir.path)
    report = build_report(plan, verdicts, history, run_id=run_dir.run_id, started=started,
                          seed=seed, executor=f"local pool, {concurrency} at once",
                          evidence=run_dir.path)  # fmt: skip
    problem = seal_run(run_dir, report, history, key_file, metrics_file)
    if problem:
        click.echo(f"warning: {problem}", err=True)
    _conclude(report, json_output, said_each=True)  # the pool said each drill as it ended


def _conclude(report: dict[str, Any], json_output: bool, said_each: bool = False) -> None:
    if json_output:
        emit_json(report)
    else:
        if not said_each:
            for result in report["results"]:
                click.echo(_line(_Result(result)))
        s = report["summary"]
        verdict = "PASSED" if report["passed"] else "FAILED"
        for x in report["stale"]:
            last = x["last_passed_at"] or "never"
            click.echo(f"STALE {x['target']}/{x['kind']}: last passed {last}")
        where = Path(report["evidence"])
        click.echo(f"Fleet drill {verdict}: {s['passed']} of {s['drills']} drills passed, "
                   f"{s['stale']} stale; report: {where / 'fleet.html'}")  # fmt: skip
    if not report["passed"]:
        raise SystemExit(1)


class _Result:
    """A report's result read like a Verdict (for the line printed per drill)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.__dict__.update(data)


def _line(verdict: Any) -> str:
    head = "PASS" if verdict.status == "passed" else "FAIL"
    point = verdict.recovery_point["backup_id"] if verdict.recovery_point else "-"
    rto = f"  RTO {verdict.rto_seconds:.1f} s" if verdict.rto_seconds is not None else ""
    why = f"  {verdict.reason}" if verdict.reason else ""
    return f"{head}  {verdict.target}/{verdict.kind}  {point}{rto}{why}"


def _signing_key(plan: Plan) -> Path | None:
    from backup_engine.drill.report.signing import SIGNING_KEY_FILE_ENV, load_private_key

    key = plan.signing_key or (Path(os.environ[SIGNING_KEY_FILE_ENV])
                               if os.environ.get(SIGNING_KEY_FILE_ENV) else None)  # fmt: skip
    if key is not None:
        load_private_key(key)  # an unusable key fails now, not after the drills
    return key


def replace_key(plan: Plan, key: Path | None) -> Plan:
    from dataclasses import replace

    return replace(plan, signing_key=key)


def _sealed_drills(run_dir: Path) -> list[Path]:
    """The drill directories fleet.json names as evidence (it is covered by the run's sums)."""
    import json

    from backup_engine.drill.fleet.report import FLEET_JSON

    report = json.loads((run_dir / FLEET_JSON).read_text())
    root = run_dir.resolve()
    found = []
    for result in report["results"]:
        if result.get("evidence"):
            drill = (run_dir / result["evidence"]).resolve()
            if not drill.is_relative_to(root):
                raise IntegrityError(f"{FLEET_JSON} names evidence outside the run: {drill}")
            found.append(drill)
    return found


def _leave_after(action: Callable[[], None]) -> NoReturn:
    """Run a command that used the Temporal SDK, then leave without Python's finalization: the
    SDK's native threads can call into an interpreter being torn down and abort the process
    (seen once in the test run: "PyGILState_Release ... finalizing", SIGABRT after the report
    was printed). The outcome is said as `backup-engine` says it, with its exit code."""
    from backup_engine import logs

    code = 0
    try:
        action()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BackupEngineError as exc:
        click.echo(logs.error_line(exc.one_line()), err=True)
        code = exc.exit_code
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _temporal_work() -> Any:
    """The Temporal side, which needs the `fleet` extra (temporalio): one clear line without."""
    try:
        from backup_engine.drill.fleet import temporal_work
    except ModuleNotFoundError as exc:
        if exc.name is None or not exc.name.startswith("temporalio"):
            raise
        raise UsageError("running a fleet on Temporal needs the temporalio package",
                         hint="pip install 'restore-drill[fleet]'") from None  # fmt: skip
    return temporal_work


def _temporal(plan: Plan, address: str | None) -> Plan:
    from dataclasses import replace

    if address is None:
        return plan
    return replace(plan, temporal=replace(plan.temporal, address=address))


@fleet.command()
@click.option("--address", envvar="TEMPORAL_ADDRESS", default="localhost:7233", show_default=True,
              help="Temporal frontend [$TEMPORAL_ADDRESS].")  # fmt: skip
@click.option("--namespace", envvar="TEMPORAL_NAMESPACE", default="default", show_default=True,
              help="[$TEMPORAL_NAMESPACE]")  # fmt: skip
@click.option("--task-queue", default="restore-drill-fleet", show_default=True,
              help="The queue plans are started on ([fleet.temporal] task_queue).")  # fmt: skip
@click.option("--drills", type=click.IntRange(1, 64), help="Drills at once on this worker "
              "[default: what its cores, memory and disk allow].")  # fmt: skip
def worker(address: str, namespace: str, task_queue: str, drills: int | None) -> None:
    """Run drills for fleet plans started on Temporal, until stopped (any number of workers,
    on any machines that can reach the targets' repositories)."""
    import asyncio

    from backup_engine.drill.fleet.plan import TemporalSettings

    work = _temporal_work().work

    settings = TemporalSettings(address=address, namespace=namespace, task_queue=task_queue)
    click.echo(f"fleet worker on {address} ({namespace}), queue {task_queue}", err=True)

    def serve() -> None:
        try:
            asyncio.run(work(settings, drills))
        except KeyboardInterrupt:
            click.echo("fleet worker stopped", err=True)

    _leave_after(serve)


@fleet.command(name="schedule")
@plan_argument
@click.option("--address", envvar="TEMPORAL_ADDRESS", help="Temporal frontend [default: the "
              "plan's [fleet.temporal] address, $TEMPORAL_ADDRESS].")  # fmt: skip
def schedule_command(plan_file: Path, address: str | None) -> None:
    """Create (or update to this plan) the Temporal Schedule that starts the plan's workflow
    at its cron time in its time zone; a run that cannot start within the start window is
    skipped, never run late."""
    import asyncio

    schedule = _temporal_work().schedule

    plan = _temporal(load_plan(plan_file), address)

    def create() -> None:
        schedule_id = asyncio.run(schedule(plan))
        assert plan.schedule is not None
        when = plan.schedule.cron.next_after(datetime.now(UTC), plan.schedule.zone)
        nxt = when.isoformat() if when else "never"
        cron, zone = plan.schedule.cron.text, plan.schedule.timezone
        click.echo(f"schedule {schedule_id} on {plan.temporal.address}: {cron} ({zone}), "
                   f"next run {nxt}")  # fmt: skip

    _leave_after(create)


@fleet.command(name="verify")
@click.argument("run_dir", metavar="RUN_DIR", type=click.Path(path_type=Path, file_okay=False,
                                                              exists=True))  # fmt: skip
@click.option("--public-key", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="The signer's Ed25519 public key: each signature must match.")  # fmt: skip
@click.option("--require-signature", is_flag=True, help="An unsigned run or drill fails too.")
def verify_command(run_dir: Path, public_key: Path | None, require_signature: bool) -> None:
    """Check a fleet run's evidence, as an auditor would: every file against the run's
    SHA256SUMS and its signature, then each drill directory the report names the same way
    (with its report.json's schema). Any difference is exit 4. A drill stopped before it
    sealed its evidence (its timeout) is covered by the run's SHA256SUMS alone."""
    from backup_engine.drill.fleet.report import check_fleet_json
    from backup_engine.drill.report.signing import load_public_key
    from backup_engine.drill.report.sums import verify_report

    key = load_public_key(public_key) if public_key else None
    run = verify_report(run_dir, public_key=key, require_signature=require_signature,
                        check_document=check_fleet_json)  # fmt: skip
    drills = _sealed_drills(run_dir)
    for drill in drills:
        verify_report(drill, public_key=key, require_signature=require_signature)
    signed = f"signed by {run.signer}" if run.signer else "signature not checked"
    click.echo(f"{run_dir}: {run.files} files match SHA256SUMS, {signed}; "
               f"{len(drills)} drill directories verified the same way")  # fmt: skip
