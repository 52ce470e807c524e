"""`backup-engine fleet check PLAN` and `backup-engine fleet run PLAN`: a restore-testing plan
for many databases, checked, then run on this machine (the local pool)."""

from __future__ import annotations

import contextlib
import os
import random
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from backup_engine.commands.output import emit_json, emit_table
from backup_engine.drill.fleet.plan import Plan, Target, load_plan
from backup_engine.errors import BackupEngineError
from backup_engine.urls import redact

plan_argument = click.argument("plan_file", metavar="PLAN", type=click.Path(path_type=Path))


@click.group()
def fleet() -> None:
    """Restore-testing plans for many databases: fleet check, fleet run."""


def _repository(target: Target) -> str:
    """The target's repository URL (credentials never shown), or why it cannot be read."""
    from backup_engine.config import load_settings

    settings = load_settings(target.config, env={})
    if not settings.repository.url:
        raise BackupEngineError(f"{target.config} names no repository")
    return redact(settings.repository.url)


def _candidates(target: Target, kind: str, now: datetime) -> str:
    """What the drill would choose from: the backups of the window, and the newest's age."""
    from datetime import timedelta

    from backup_engine.config import load_settings
    from backup_engine.kinds import BY_NAME

    storage = load_settings(target.config, env={}).open_storage()
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
                row["repository"] = _repository(target)
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
@click.option("--json", "json_output", is_flag=True, help="Print the fleet report as JSON.")
def run(
    plan_file: Path,
    names: tuple[str, ...],
    tags: tuple[str, ...],
    concurrency: int | None,
    seed: int | None,
    metrics_file: Path | None,
    json_output: bool,
) -> None:
    """Drill every target of the plan on this machine, several at once; a sealed, signed fleet
    report under the plan's evidence directory. Exit 0 when every drill passed and no target
    is stale, 1 otherwise."""
    from backup_engine.drill.fleet.pool import machine_capacity, plan_jobs, run_pool
    from backup_engine.drill.fleet.report import build_report, load_fleet_history
    from backup_engine.drill.runs import new_run

    plan = load_plan(plan_file)
    targets = plan.select(names, tags)
    key_file = _signing_key(plan)
    seed = seed if seed is not None else plan.seed
    seed = seed if seed is not None else random.SystemRandom().randrange(1 << 31)
    jobs = plan_jobs(targets, seed)
    repositories = {}
    for target in targets:
        with contextlib.suppress(BackupEngineError):  # its drill fails with the reason
            repositories[target.name] = _repository(target)
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
                          seed=seed, executor=f"local pool, {concurrency} at once")  # fmt: skip
    _seal(run_dir, report, history, key_file, metrics_file)
    if json_output:
        emit_json(report)
    else:
        s = report["summary"]
        verdict = "PASSED" if report["passed"] else "FAILED"
        stale = "".join(f"\nSTALE {x['target']}/{x['kind']}: last passed "
                        f"{x['last_passed_at'] or 'never'}" for x in report["stale"])  # fmt: skip
        click.echo(f"{stale.lstrip()}\n" if stale else "", nl=False)
        click.echo(f"Fleet drill {verdict}: {s['passed']} of {s['drills']} drills passed, "
                   f"{s['stale']} stale; report: {run_dir.path / 'fleet.html'}")  # fmt: skip
    if not report["passed"]:
        raise SystemExit(1)


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


def _seal(run_dir: Any, report: dict[str, Any], history: list[Any], key_file: Path | None,
          metrics_file: Path | None) -> None:  # fmt: skip
    import json

    from backup_engine.drill.fleet.report import (
        FLEET_HTML,
        FLEET_JSON,
        FLEET_METRICS,
        render_fleet_html,
        write_metrics,
    )
    from backup_engine.drill.report.signing import load_private_key
    from backup_engine.drill.report.sums import write_sums
    from backup_engine.drill.runs import point_latest

    path = run_dir.path
    (path / FLEET_JSON).write_text(json.dumps(report, indent=2) + "\n")
    (path / FLEET_HTML).write_text(render_fleet_html(report, history))
    write_metrics(path / FLEET_METRICS, report)
    write_sums(path, private_key=load_private_key(key_file) if key_file else None)
    problem = point_latest(run_dir)
    if problem:
        click.echo(f"warning: {problem}", err=True)
    if metrics_file is not None:
        write_metrics(metrics_file, report)
