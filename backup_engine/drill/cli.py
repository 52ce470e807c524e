"""`backup-engine drill`: run the restore drills and keep their evidence.

The drills are the Gherkin scenarios in `features/`, run by pytest-bdd; tags are pytest
markers (`--tags "postgres and not slow"`). With no configuration they run on the embedded
defaults: throwaway local servers and an S3 server on loopback.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import click

from backup_engine.commands.context import CliContext
from backup_engine.drill.report import REPORT_JSON
from backup_engine.drill.runs import RUN_ID_ENV, RunDir, new_run, point_latest, prune
from backup_engine.drill.session import (
    EXIT_NO_SCENARIOS,
    EXIT_PYTEST_USAGE,
    default_features_dir,
    need_drill_extra,
    pytest_args,
    step_modules,
    step_plugins,
)
from backup_engine.drill.subcommands import (
    cleanup,
    history,
    keygen,
    list_command,
    steps_command,
    verify_report_command,
)
from backup_engine.errors import UsageError


@click.group(invoke_without_command=True)
@click.option("--tags", help='Which scenarios, as a marker expression: "postgres and not slow".')
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML config file (the same as backup-engine --config).",
)
@click.option(
    "--report-root",
    type=click.Path(path_type=Path, file_okay=False),
    help="Each run's evidence goes into a new <UTC time>-<run id>/ here, and latest points "
    "to the newest sealed run [default: [drill] report_root, drill-report].",
)
@click.option(
    "--report-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="This run's evidence directory itself (absent or empty; never an earlier run's).",
)
@click.option(
    "--allow-skips",
    is_flag=True,
    help="Skipped scenarios do not make the drill incomplete (exit 6); the evidence says so.",
)
@click.option(
    "--backend",
    type=click.Choice(["local", "docker"]),
    default=None,
    help="Where throwaway servers run [default: $DRILL_BACKEND or local].",
)
@click.option(
    "--features",
    "features_dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Directory of .feature files [default: the checkout's features/].",
)
@click.option("-k", "keyword", help="Only scenarios whose name matches (pytest -k).")
@click.option(
    "--check",
    "check_only",
    is_flag=True,
    help="Only check that every step of every feature has a definition (no server starts).",
)
@click.option("--webhook", help="POST a Slack-compatible summary here [$DRILL_WEBHOOK_URL].")
@click.option(
    "--metrics-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write Prometheus textfile metrics here [$DRILL_METRICS_FILE].",
)
@click.option(
    "--keep-in-repository",
    is_flag=True,
    help="Also copy the sealed evidence into the configured repository (drill-reports/).",
)
@click.option(
    "--controls",
    "controls_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="TOML mapping feature tags to audit controls [default: the shipped mapping].",
)
@click.option(
    "--pick",
    type=click.Choice(["latest", "random"]),
    default=None,
    help="Which backup the latest-backup drill restores [default: latest].",
)
@click.option(
    "--within-days",
    type=click.IntRange(1, 365),
    default=None,
    help="Only backups of the last N days: --pick random chooses among them (default 30), "
    "--pick latest fails when the newest is older (latest within window).",
)
@click.option("--seed", type=int, help="With --pick random: the seed (recorded in the evidence).")
@click.option(
    "--signing-key",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Ed25519 private key (drill keygen) to sign the evidence [$DRILL_SIGNING_KEY_FILE].",
)
@click.option(
    "--pg-version",
    type=int,
    help="Run the drill inside the server image of this PostgreSQL major version (15: "
    "Debian bookworm, 17: trixie; scripts/build-test-image.sh all builds both).",
)
@click.pass_context
def drill(
    ctx: click.Context,
    tags: str | None,
    config_file: Path | None,
    report_root: Path | None,
    report_dir: Path | None,
    allow_skips: bool,
    backend: str | None,
    features_dir: Path | None,
    keyword: str | None,
    check_only: bool,
    webhook: str | None,
    metrics_file: Path | None,
    keep_in_repository: bool,
    controls_file: Path | None,
    pick: str | None,
    within_days: int,
    seed: int | None,
    signing_key: Path | None,
    pg_version: int | None,
) -> None:
    """Run the restore drills: exit 0 when every selected scenario passed, 1 when one failed,
    2 when the drill could not run, 6 when scenarios were skipped (incomplete)."""
    if config_file is not None:
        ctx.obj = replace(ctx.obj, config=config_file)
    if ctx.invoked_subcommand is not None:
        return
    obj: CliContext = ctx.obj
    settings = obj.settings()
    root = report_root or Path(settings.drill.report_root)
    if pg_version is not None:
        _drill_in_image(ctx, pg_version, root, report_dir, settings.drill.keep_days)
    need_drill_extra()
    import pytest

    from backup_engine.drill.report.signing import SIGNING_KEY_FILE_ENV, load_private_key

    key_file = signing_key or (
        Path(os.environ[SIGNING_KEY_FILE_ENV]) if os.environ.get(SIGNING_KEY_FILE_ENV) else None
    )
    if key_file is not None:
        load_private_key(key_file)  # an unusable key fails now, not after an hour of drills
        os.environ[SIGNING_KEY_FILE_ENV] = str(key_file.absolute())
    if controls_file is not None:
        from backup_engine.drill.controls import load_controls

        load_controls(controls_file)
        os.environ["DRILL_CONTROLS_FILE"] = str(controls_file.absolute())
    if pick is not None:
        from backup_engine.drill.selection import SELECTION_ENV, selection_value

        os.environ[SELECTION_ENV] = selection_value(pick, within_days, seed)

    repository = settings.open_storage() if keep_in_repository else None
    features = features_dir or default_features_dir()
    if not features.is_dir():
        raise UsageError(
            f"no drill scenarios at {features}",
            hint="run from a restore-drill checkout, or pass --features DIR",
        )
    if backend:
        from backup_engine.servers import preflight

        preflight(backend)
        os.environ["DRILL_BACKEND"] = backend
    if obj.config is not None:
        os.environ["BACKUP_ENGINE_CONFIG"] = str(obj.config.absolute())
    plugins = step_plugins()

    _check_steps(features, plugins)  # before any server starts
    if check_only:
        return
    # After every check that can refuse: a refusal writes nothing. Inside the image
    # (--pg-version), the directory and run id are the ones the host made.
    inherited = os.environ.get(RUN_ID_ENV) if report_dir is not None else None
    run = new_run(root, report_dir, run_id=inherited)
    directory = run.path
    os.environ[RUN_ID_ENV] = run.run_id
    args = [
        *pytest_args(features, plugins, tags, keyword),
        "-q",
        "--drill-progress",
        f"--drill-report-dir={directory}",
        f"--junitxml={directory / 'junit.xml'}",
        f"--cucumberjson={directory / 'cucumber.json'}",
    ]
    if webhook:
        args.append(f"--drill-webhook={webhook}")
    if metrics_file:
        args.append(f"--drill-metrics-file={metrics_file.absolute()}")
    if allow_skips:
        args.append("--drill-allow-skips")
    code = int(pytest.main(args))
    if code in (EXIT_NO_SCENARIOS, EXIT_PYTEST_USAGE):
        run.discard()  # nothing ran: no run directory holds anything of it
        if code == EXIT_NO_SCENARIOS:
            raise UsageError(
                f"no scenario matches --tags {tags!r}" if tags else "no scenarios found"
            )
        raise UsageError(
            "the drill could not start (see the message above)",
            hint="tags are the markers in pyproject.toml, e.g. --tags 'postgres and not slow'",
        )
    if repository is not None and directory.is_dir():
        from backup_engine.drill.history import store_report

        click.echo(f"evidence kept in {repository.url}/{store_report(repository, directory)}")
    raise SystemExit(_finish(run, settings.drill.keep_days, fallback=0 if code == 0 else 1))


def _finish(run: RunDir, keep_days: int, *, fallback: int) -> int:
    """After the run: `latest` switched to it once sealed, old runs pruned; the exit code
    the evidence records (so the headline, the summary and the exit code agree)."""
    for problem in filter(None, [point_latest(run)]):
        click.echo(f"warning: {problem}", err=True)
    if run.root is not None:
        for path in prune(run.root, keep_days):
            click.echo(f"pruned drill run {path.name} (older than {keep_days} days)")
    try:
        report = json.loads((run.path / REPORT_JSON).read_text())
        return int(report["exit_code"])
    except (OSError, ValueError, KeyError, TypeError):
        return fallback  # no report (the session broke off): pytest's verdict


def _drill_in_image(
    ctx: click.Context, pg_version: int, root: Path, report_dir: Path | None, keep_days: int
) -> None:
    """The same drill, run inside the image of `pg_version` (see drill/in_image.py)."""
    from backup_engine.drill.in_image import check_image, drill_in_image, image_for

    obj: CliContext = ctx.obj
    if obj.config is not None:
        os.environ["BACKUP_ENGINE_CONFIG"] = str(obj.config.absolute())
    check_image(image_for(pg_version))  # before a run directory is made
    run = new_run(root, report_dir)
    os.environ[RUN_ID_ENV] = run.run_id  # passed into the container with the other DRILL_*
    click.echo(f"running the drill in the PostgreSQL {pg_version} image")
    code = drill_in_image(pg_version, dict(ctx.params), run.path, obj.config)
    if code == UsageError.exit_code and not (run.path / REPORT_JSON).exists():
        run.discard()
        raise SystemExit(code)
    raise SystemExit(_finish(run, keep_days, fallback=code))


def _check_steps(features: Path, plugins: list[str]) -> None:
    """Every step of every feature has a definition its table and docstring fit, or each one
    that does not is named and the drill cannot run (exit 2, no evidence: nothing ran)."""
    from backup_engine.drill.catalog import DrillCannotRun, check_features, feature_files

    files = feature_files(features)
    problems = check_features(files, step_modules(plugins))
    for problem in problems:
        click.echo(problem.describe())
    if problems:
        raise DrillCannotRun(
            f"the scenarios cannot run as written: {len(problems)} step(s) named above",
            hint="see the step catalog: backup-engine drill steps",
        )
    click.echo(f"{len(files)} feature files: every step has a definition it fits")


drill.add_command(steps_command)
drill.add_command(list_command)
drill.add_command(verify_report_command)
drill.add_command(keygen)
drill.add_command(history)
drill.add_command(cleanup)
