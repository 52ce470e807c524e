"""`pg verify --archive`: what it prints, and its exit code (4 when anything is missing or
damaged, naming each)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from backup_engine.commands.context import CliContext
from backup_engine.commands.output import emit_json
from backup_engine.errors import IntegrityError


def verify_archive_command(
    obj: CliContext, *, reread: bool, json_output: bool, metrics_file: Path | None = None
) -> None:
    from backup_engine.postgres.archive_verify import default_state_file, verify_archive

    storage = obj.settings().open_storage()
    storage.check()
    state = default_state_file(storage.url)
    if reread:
        state.unlink(missing_ok=True)
    report = verify_archive(storage, state_file=state)
    if metrics_file is not None:
        from backup_engine.metrics import write_archive_metrics

        write_archive_metrics(metrics_file, report, now=time.time())
    if json_output:
        emit_json({
            "ok": report.ok, "timeline": report.timeline, "checked_from": report.checked_from,
            "missing": report.missing, "damaged": [{"key": k, "why": w} for k, w in report.damaged],
            "broken": [{"timeline": t, "why": w} for t, w in report.broken],
            "read": report.read, "remembered": report.remembered,
        })  # fmt: skip
    else:
        for name in report.missing:
            click.echo(f"missing: {name}")
        for key, why in report.damaged:
            click.echo(f"damaged: {key}: {why}")
        for timeline, why in report.broken:
            click.echo(f"timeline {timeline}: {why}")
    if report.timeline is None and report.ok:
        if not json_output:
            click.echo(f"{storage.url}: no base backup, nothing to verify the archive from")
        return
    read = f"{report.read} objects read, {report.remembered} found whole before"
    if report.ok:
        if not json_output:
            click.echo(f"WAL archive OK from {report.checked_from} to the end of timeline "
                       f"{report.timeline}: no gap; {read}")  # fmt: skip
        return
    problems = len(report.missing) + len(report.damaged) + len(report.broken)
    raise IntegrityError(
        f"the WAL archive has {problems} problem(s): {len(report.missing)} missing, "
        f"{len(report.damaged)} damaged, {len(report.broken)} timeline(s) broken ({read})",
        hint="a restore through them would stop there; take a new base backup now, and find "
        "what removed or changed them",
    )
