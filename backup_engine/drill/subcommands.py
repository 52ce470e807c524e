"""The drill's subcommands that run no scenario: the step catalog, the scenario list, and the
evidence tools an auditor uses (verify-report, keygen, history), which work from a plain install
without the drill extra."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from backup_engine.commands.context import CliContext
from backup_engine.commands.output import emit_json, emit_table
from backup_engine.drill.session import (
    EXIT_NO_SCENARIOS,
    default_features_dir,
    need_drill_extra,
    pytest_args,
    step_modules,
    step_plugins,
)
from backup_engine.durations import format_duration
from backup_engine.errors import UsageError


@click.command(name="steps")
@click.option("--markdown", is_flag=True, help="As the README's list (a Markdown code block).")
def steps_command(markdown: bool) -> None:
    """Print every step a scenario can use, from the step library's code, with its docstring."""
    from backup_engine.drill.catalog import load_catalog

    plugins = step_plugins()

    catalog = load_catalog(step_modules(plugins))
    if markdown:
        click.echo("```gherkin")
    for step in catalog:
        click.echo(step.describe())
        if step.doc and not markdown:
            click.echo(f"    {step.doc}")
    if markdown:
        click.echo("```")


@click.command(name="list")
@click.option("--tags", help="Only scenarios matching this marker expression (as for a run).")
@click.option("-k", "keyword", help="Only scenarios whose name matches (pytest -k).")
@click.option(
    "--features",
    "features_dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Directory of .feature files [default: the checkout's features/].",
)
@click.option("--json", "json_output", is_flag=True, help="Print JSON for machines.")
def list_command(
    tags: str | None, keyword: str | None, features_dir: Path | None, json_output: bool
) -> None:
    """List the scenarios a drill with these options would run (no server starts)."""
    from backup_engine.drill.session import list_scenarios

    need_drill_extra()
    features = features_dir or default_features_dir()
    plugins = step_plugins()

    code, listed, _ = list_scenarios(pytest_args(features, plugins, tags, keyword))
    if code not in (0, EXIT_NO_SCENARIOS):  # pytest said why on stderr
        raise UsageError(
            "cannot select scenarios with these options (see the message above)",
            hint="tags are the markers in pyproject.toml, e.g. --tags 'postgres and not slow'",
        )
    if json_output:
        emit_json({"scenarios": [s.to_dict() for s in listed]})
        return
    emit_table(("FEATURE", "SCENARIO", "TAGS"),
               [(s.feature, s.scenario, " ".join(s.tags)) for s in listed])  # fmt: skip
    click.echo(f"{len(listed)} scenarios")


@click.command(name="verify-report")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option(
    "--public-key",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="The signer's Ed25519 public key: the signature must verify with it.",
)
@click.option("--require-signature", is_flag=True, help="An unsigned report fails (exit 4), too.")
@click.pass_obj
def verify_report_command(
    obj: CliContext, directory: Path, public_key: Path | None, require_signature: bool
) -> None:
    """Check a report directory: every file against SHA256SUMS, the signature with the public
    key, report.json against its schema. Any difference is exit 4."""
    from backup_engine.drill.report.signing import load_public_key
    from backup_engine.drill.report.sums import SIGNING_KEY_ENV, verify_report

    result = verify_report(
        directory,
        os.environ.get(SIGNING_KEY_ENV) or None,
        public_key=load_public_key(public_key) if public_key else None,
        require_signature=require_signature,
    )
    signed = f"signed by {result.signer}" if result.signer else "signature not checked"
    if result.signed:
        signed += ", HMAC valid"
    click.echo(f"{directory}: {result.files} files match SHA256SUMS, schema valid, {signed}")


@click.command()
@click.option(
    "--private-key",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("drill-signing.key"),
    show_default=True,
    help="Where the private key goes (0600; keep it on the drill host only).",
)
@click.option(
    "--public-key",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("drill-signing.pub"),
    show_default=True,
    help="Where the public key goes (give it to auditors).",
)
def keygen(private_key: Path, public_key: Path) -> None:
    """Make an Ed25519 key pair to sign drill evidence with."""
    from backup_engine.drill.report.signing import generate_keys

    print_fingerprint = generate_keys(private_key, public_key)
    click.echo(
        f"signing key {print_fingerprint}: private {private_key}, public {public_key}; "
        f"sign with: backup-engine drill --signing-key {private_key}"
    )


@click.command()
@click.option(
    "--report-root",
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory holding one directory per run [default: [drill] report_root].",
)
@click.option(
    "--from-repository", is_flag=True, help="Read the runs kept in the configured repository."
)
@click.option(
    "--last",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="Trends over this many runs.",
)
@click.option(
    "--html",
    "html_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write a page with a chart per scenario's RTO/RPO and the controls, run by run.",
)
@click.option("--json", "json_output", is_flag=True, help="Print JSON for machines.")
@click.pass_obj
def history(
    obj: CliContext,
    report_root: Path | None,
    from_repository: bool,
    last: int,
    html_file: Path | None,
    json_output: bool,
) -> None:
    """List past drill runs with their RTO/RPO trends against targets and the controls."""
    from backup_engine.drill.history import (
        control_history,
        load_history,
        load_stored_history,
        series,
        sparkline,
        trend,
    )

    settings = obj.settings()
    root = report_root or Path(settings.drill.report_root)
    if from_repository:
        storage = settings.open_storage()
        runs, source = load_stored_history(storage), storage.url
    else:
        runs, source = load_history(root), str(root)
    controls = control_history(runs)
    if html_file is not None:
        _history_page(runs, source, last, html_file)
    if json_output:
        emit_json(
            {
                "runs": [
                    {"location": r.location, "started_at": r.started_at, "passed": r.passed,
                     "scenarios": r.scenarios, "failed": r.failed,
                     "measurements": r.measurements, "controls": r.controls,
                     "evidence_sha256": r.evidence_sha256}
                    for r in runs
                ],
                "controls": [c.to_dict() for c in controls],
            }
        )  # fmt: skip
        return
    if not runs:
        click.echo("no drill runs found")
        return
    emit_table(
        ("STARTED", "RESULT", "SCENARIOS", "FAILED", "EVIDENCE"),
        [
            (r.started_at, "passed" if r.passed else "FAILED", str(r.scenarios), str(r.failed),
             r.location)
            for r in runs
        ],
    )  # fmt: skip
    trends = series(runs, last)
    if trends:
        click.echo("")
        emit_table(
            ("SCENARIO", "MEASURE", f"LAST {last} RUNS", "LATEST (vs earlier mean)", "TARGET",
             "OVER"),
            [(t.scenario, t.measure, sparkline([p[1] for p in t.points]),
              trend([p[1] for p in t.points]), format_duration(t.points[-1][2]), str(t.over))
             for t in trends],
        )  # fmt: skip
    if controls:
        click.echo("")
        emit_table(
            ("CONTROL", "LAST PASSED", "EVIDENCE (sha256 of SHA256SUMS)", "LATEST RUN"),
            [
                (c.control, c.last_passed.started_at if c.last_passed else "never",
                 (c.last_passed.evidence_sha256 or "?")[:16] if c.last_passed else "-",
                 "passed" if c.latest.controls[c.control] else "FAILED")
                for c in controls
            ],
        )  # fmt: skip


def _history_page(runs: list[Any], source: str, last: int, path: Path) -> None:
    need_drill_extra(("jinja2", "matplotlib"))  # the page's templates and charts
    from backup_engine.drill.report.html import render_history

    path.write_text(render_history(runs, source, last))
    click.echo(f"wrote {path}: {min(len(runs), last)} runs", err=True)


@click.command()
@click.option("--dry-run", is_flag=True, help="Only say what killed drills left behind.")
def cleanup(dry_run: bool) -> None:
    """Stop and remove what drills that were killed left behind: their throwaway servers,
    containers and scratch areas (a drill does this itself before it starts)."""
    from backup_engine.servers.reaper import orphans, reap

    if dry_run:
        for root, pid in orphans():
            click.echo(f"would remove {root} left by drill process {pid} (gone)")
        return
    reaped = reap()
    for entry in reaped:
        click.echo(entry.describe())
    if not reaped:
        click.echo("nothing left behind by earlier drills")
