"""Commands that span every kind of backup: `run-all`, `metrics`, `check`, `usage`, `runbook`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from backup_engine.commands.context import CliContext
from backup_engine.commands.output import emit_json, emit_table, human_bytes


@click.command(name="run-all")
@click.option("--no-progress", is_flag=True, help="Do not draw progress bars.")
@click.option("--json", "json_output", is_flag=True, help="Print JSON for machines.")
@click.option(
    "--metrics-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write when this ran and which kind failed, as Prometheus textfile metrics.",
)
@click.pass_obj
def run_all(
    obj: CliContext, no_progress: bool, json_output: bool, metrics_file: Path | None
) -> None:
    """Run every backup the config describes (PostgreSQL, Redis, media), past failures.

    With stanzas ([stanza.NAME]) and no --stanza: every stanza's cluster, then Redis and media.

    Exits 1 if any of them failed; the summary says which and why.
    """
    from backup_engine.errors import ConfigError
    from backup_engine.runall import run_all_backups

    results = run_all_backups(
        obj.settings(),
        progress=obj.progress(json_output=json_output, enabled=not no_progress),
        stanza=obj.settings_for,
    )
    if not results:  # a cron job with a broken configuration must not succeed silently
        raise ConfigError(
            "nothing to back up: [postgres] dsn, [redis] url and [media] paths are all empty",
            hint="set at least one of them in the configuration (or its BACKUP_ENGINE_* variable)",
        )
    if metrics_file is not None:
        import time

        from backup_engine.metrics import write_run_metrics

        failed: dict[str, bool] = {}
        for r in results:  # media jobs are one per path: one kind, failed if any failed
            kind = r.job.split(" ")[0]
            failed[kind] = failed.get(kind, False) or r.status != "ok"
        write_run_metrics(metrics_file, failed, now=time.time())
    if json_output:
        emit_json([r.to_dict() for r in results])
    else:
        emit_table(
            ("JOB", "STATUS", "BACKUP ID", "STORED", "SECONDS", "ERROR"),
            [
                (
                    r.job,
                    r.status,
                    r.backup_id or "-",
                    human_bytes(r.stored_bytes) if r.stored_bytes is not None else "-",
                    f"{r.seconds:.1f}",
                    r.error or "",
                )
                for r in results
            ],
        )
    if any(r.status != "ok" for r in results):
        raise SystemExit(1)


@click.command()
@click.option(
    "--textfile",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Prometheus textfile to (re)write, e.g. in node_exporter's textfile directory.",
)
@click.option(
    "--usage",
    "with_usage",
    is_flag=True,
    help="Also the bytes stored per backup type (lists the whole repository).",
)
@click.option(
    "--archiver",
    is_flag=True,
    help="Instead: PostgreSQL's archiver now (pg_stat_archiver, WAL waiting), for the WAL "
    "alerts; one query, no repository access: run it every minute.",
)
@click.pass_obj
def metrics(obj: CliContext, textfile: Path, with_usage: bool, archiver: bool) -> None:
    """Write the age and size of the newest backup of each kind, and of the newest WAL."""
    from backup_engine.kinds import KINDS
    from backup_engine.metrics import write_backup_metrics

    settings = obj.settings()
    if archiver:
        _archiver_metrics(settings, textfile)
        return
    states = [_repository_state(scope, with_usage) for scope in settings.each_repository()]
    if states[0].backups is None:  # the first repository is the one restores read: say why
        settings.open_storage().check()
    backups = write_backup_metrics(
        textfile, states, expected=tuple(k.name for k in KINDS if k.configured(settings))
    )
    click.echo(
        f"wrote {textfile}: newest backup of {', '.join(b.kind for b in backups) or 'no kind'}"
    )


def _repository_state(settings: Any, with_usage: bool) -> Any:
    """One repository's newest backups, newest WAL and (with usage) bytes per type; a
    repository that cannot be read is written as holding nothing (its alerts fire)."""
    from backup_engine.errors import BackupEngineError
    from backup_engine.metrics import RepositoryState, read_repository
    from backup_engine.retention import WEEKDAYS
    from backup_engine.usage import measure

    try:
        storage = settings.open_storage()
        storage.check()
        usage = None
        if with_usage:
            found = measure(storage, WEEKDAYS.index(settings.retention.weekly_day))
            usage = {k.kind.split(" (")[0].lower().replace(" ", "_"): k.bytes
                     for k in found.kinds.values()}  # fmt: skip
            if found.noncurrent_bytes is not None:
                usage["old_versions"] = found.noncurrent_bytes
        return read_repository(storage, usage)
    except BackupEngineError as exc:
        click.echo(f"warning: repository {settings.selected or 1}: {exc.one_line()}", err=True)
        return RepositoryState(None)


def _archiver_metrics(settings: Any, textfile: Path) -> None:
    """The archiver's textfile; a server that cannot answer is written as down (exit 3), so
    the alerts tell a dead server from a dead timer."""
    import time

    import psycopg

    from backup_engine.errors import ConfigError, ServerUnreachable
    from backup_engine.metrics import write_archiver_metrics
    from backup_engine.postgres.archiver import archiver_state

    if not settings.postgres.dsn:
        raise ConfigError("metrics --archiver reads PostgreSQL: set [postgres] dsn")
    limit = settings.wal.queue_max_mb << 20
    try:
        state = archiver_state(settings.postgres.dsn)
    except (ServerUnreachable, psycopg.Error) as exc:
        write_archiver_metrics(textfile, None, limit, now=time.time())
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ServerUnreachable(f"archiver state not read: {reason}") from None
    write_archiver_metrics(textfile, state, limit, now=time.time())
    problem = state.problem()
    click.echo(f"wrote {textfile}: " + (problem or "the archiver is archiving"))


@click.command()
@click.option("--no-wal-probe", is_flag=True, help="Do not force a WAL switch to time archiving.")
@click.option(
    "--deep",
    is_flag=True,
    help="Re-read the newest backups and check every sha256; verify the WAL archive too.",
)
@click.option("--json", "json_output", is_flag=True, help="Print JSON for machines (same exit).")
@click.pass_obj
def check(obj: CliContext, no_wal_probe: bool, deep: bool, json_output: bool) -> None:
    """Nagios-style health check: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.

    Config valid, storage reachable and writable, the newest backup of each kind complete (with
    --deep: every sha256 re-checked), newest backup per configured kind within [check] limits,
    and (with [postgres] dsn) WAL archiving alive: a forced WAL switch must reach storage in
    time, the live RPO probe.
    """
    from backup_engine.errors import BackupEngineError
    from backup_engine.health import CRITICAL, STATE_NAMES, UNKNOWN, Finding, overall, run_checks

    try:
        findings = run_checks(obj.settings(), wal_probe=not no_wal_probe, deep=deep)
    except BackupEngineError as exc:
        findings = [Finding("config", CRITICAL, exc.one_line())]
    except Exception as exc:  # noqa: BLE001 - a monitoring probe must answer UNKNOWN, not crash
        findings = [Finding("check", UNKNOWN, f"{type(exc).__name__}: {exc}")]
    state = overall(findings)
    worst = [f for f in findings if f.state == state and state != 0] or findings[-1:]
    perfdata = " ".join(f.perfdata for f in findings if f.perfdata)
    headline = "; ".join(f"{f.name}: {f.message}" for f in worst)
    if json_output:
        emit_json(
            {
                "state": STATE_NAMES[state],
                "exit_code": state,
                "summary": headline,
                "findings": [
                    {"name": f.name, "state": STATE_NAMES[f.state], "message": f.message,
                     "perfdata": f.perfdata}
                    for f in findings
                ],
            }
        )  # fmt: skip
        raise SystemExit(state)
    click.echo(f"BACKUP {STATE_NAMES[state]} - {headline}" + (f" | {perfdata}" if perfdata else ""))
    for finding in findings:
        click.echo(f"{STATE_NAMES[finding.state]:8} {finding.name}: {finding.message}")
    raise SystemExit(state)


@click.command()
@click.option(
    "--price-per-gb",
    type=click.FloatRange(min=0),
    default=0.023,
    envvar="BACKUP_ENGINE_USAGE_PRICE_PER_GB",
    show_default=True,
    help="USD per GB-month (S3 Standard's list price) [$BACKUP_ENGINE_USAGE_PRICE_PER_GB].",
)
@click.option("--json", "json_output", is_flag=True, help="Print JSON for machines.")
@click.pass_obj
def usage(obj: CliContext, price_per_gb: float, json_output: bool) -> None:
    """What the repository stores per kind and per month, and its monthly cost, beside the
    plan's "Storage Requirements" estimate."""
    from backup_engine.retention import WEEKDAYS
    from backup_engine.usage import GB, PLAN, measure

    settings = obj.settings()
    storage = settings.open_storage()
    storage.check()
    found = measure(storage, WEEKDAYS.index(settings.retention.weekly_day))
    if json_output:
        emit_json(
            {
                "repository": storage.url,
                "price_per_gb_month": price_per_gb,
                "kinds": [
                    {"kind": k.kind, "objects": k.objects, "bytes": k.bytes,
                     "monthly_cost": round(k.cost(price_per_gb), 2), "plan_bytes": PLAN[k.kind],
                     "by_month": dict(sorted(k.by_month.items())),
                     "locked_bytes": k.locked_bytes if storage.object_lock else None}
                    for k in found.kinds.values()
                ],
                "noncurrent_objects": found.noncurrent_objects,
                "noncurrent_bytes": found.noncurrent_bytes,
                "total_bytes": found.total_bytes,
                "total_monthly_cost": round(found.total_bytes / GB * price_per_gb, 2),
            }
        )  # fmt: skip
        return
    rows = [
        (k.kind, str(k.objects), human_bytes(k.bytes), f"${k.cost(price_per_gb):,.2f}",
         human_bytes(int(plan)) if (plan := PLAN[k.kind]) else "-")
        for k in found.kinds.values()
    ]  # fmt: skip
    if found.noncurrent_bytes is not None:
        old = found.noncurrent_bytes
        rows.append(("Old versions (versioning)", str(found.noncurrent_objects),
                     human_bytes(old), f"${old / GB * price_per_gb:,.2f}", "-"))  # fmt: skip
    total = found.total_bytes
    plan_total = sum(v for v in PLAN.values() if v)
    rows.append(("Total", "", human_bytes(total), f"${total / GB * price_per_gb:,.2f}",
                 human_bytes(int(plan_total))))  # fmt: skip
    emit_table(("BACKUP TYPE", "OBJECTS", "SIZE", "MONTHLY COST", "PLAN ESTIMATE"), rows)
    if storage.object_lock is not None:
        locked = sum(k.locked_bytes for k in found.kinds.values())
        click.echo(f"locked (Object Lock {storage.object_lock.mode}, retention this plan "
                   f"gives): {human_bytes(locked)} of {human_bytes(total)}")  # fmt: skip
    months = found.months()
    if months:
        click.echo("")
        emit_table(
            ("MONTH", *(k.kind.split(" (")[0].upper() for k in found.kinds.values())),
            [(m, *(human_bytes(k.by_month.get(m, 0)) for k in found.kinds.values()))
             for m in months],
        )  # fmt: skip


@click.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["md", "html"]),
    default="md",
    show_default=True,
    help="Markdown (for the wiki) or a standalone HTML page.",
)
@click.option(
    "--report",
    type=click.Path(path_type=Path, exists=True),
    help="A drill report (report.json or its directory), or a directory of them: the newest "
    "[default: [drill] report_root; none there yet: 'not drilled yet' where timings go].",
)
@click.option(
    "--pgdata",
    default="/var/lib/postgresql/15/main",
    show_default=True,
    help="The data directory the runbook restores into.",
)
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Write it here instead of stdout.")  # fmt: skip
@click.pass_obj
def runbook(
    obj: CliContext, fmt: str, report: Path | None, pgdata: str, output: Path | None
) -> None:
    """Write the recovery runbook for this configuration: the exact commands, each step with
    the duration the newest drill measured, and the plan's RTO/RPO with the latest values."""
    from backup_engine.runbook import newest_report, write_runbook

    settings = obj.settings()
    where = report or Path(settings.drill.report_root)
    text = write_runbook(settings, newest_report(where), fmt, pgdata)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text)
        click.echo(f"wrote {output}", err=True)
