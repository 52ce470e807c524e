"""`backup-engine`: the command-line entry point.

This is the only module that turns exceptions into exit codes and messages. Every user error
becomes one line on stderr (`backup-engine: error: ...`) and a documented exit code; a traceback
is shown only with --debug (or for a bug, which asks for --debug).
"""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import click

from backup_engine import __version__, logs
from backup_engine.commands.config_cmd import config
from backup_engine.commands.context import CliContext
from backup_engine.commands.expire_cmd import expire
from backup_engine.commands.media_cmd import media
from backup_engine.commands.ops import check, metrics, run_all, runbook, usage
from backup_engine.commands.pg import pg
from backup_engine.commands.pg_manage import delete_backup, show
from backup_engine.commands.pinning import MEDIA_COMMANDS, PG_PINS, REDIS_COMMANDS
from backup_engine.commands.redis_cmd import redis
from backup_engine.commands.storage_cmd import storage
from backup_engine.errors import BackupEngineError

EXIT_USAGE = 2
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


class _Commands(click.Group):
    """The engine's commands, plus the drill's and the fleet's, loaded only when asked for:
    the engine never imports the proof (`backup_engine.drill`, pytest, moto) to back up or
    restore."""

    LAZY: ClassVar[dict[str, str]] = {
        "drill": "backup_engine.drill.cli",
        "fleet": "backup_engine.drill.fleet.cli",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.LAZY])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.LAZY:
            command: click.Command = getattr(importlib.import_module(self.LAZY[name]), name)
            return command
        return super().get_command(ctx, name)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML config file [default: ./backup-engine.toml, or $BACKUP_ENGINE_CONFIG].",
)
@click.option(
    "--repo", help="Repository URL (s3://bucket/prefix or file:///path); overrides config."
)
@click.option(
    "--stanza",
    help="The PostgreSQL cluster of a configuration with several ([stanza.NAME]): its options, "
    "its repository prefix [$BACKUP_ENGINE_STANZA].",
)
@click.option("-q", "--quiet", is_flag=True, help="Say only warnings and errors on stderr.")
@click.option("-v", "--verbose", is_flag=True, help="Say more on stderr.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    envvar="BACKUP_ENGINE_LOG_FORMAT",
    show_default=True,
    help="stderr as lines for people, or JSON lines for log collectors "
    "[$BACKUP_ENGINE_LOG_FORMAT].",
)
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(__version__, prog_name="backup-engine")
@click.pass_context
def cli(
    ctx: click.Context,
    config: Path | None,
    repo: str | None,
    stanza: str | None,
    quiet: bool,
    verbose: bool,
    log_format: str,
    debug: bool,
) -> None:
    """Back up and restore PostgreSQL, Redis and media files, and prove the backups restore."""
    logs.configure(quiet=quiet, verbose=verbose, fmt=log_format)
    ctx.obj = CliContext(config=config, repo=repo, debug=debug, stanza=stanza)


for group, extra in ((pg, [show, delete_backup, *PG_PINS]), (redis, REDIS_COMMANDS),
                     (media, MEDIA_COMMANDS)):  # fmt: skip
    for command in extra:
        group.add_command(command)
cli.add_command(pg)
cli.add_command(redis)
cli.add_command(media)
cli.add_command(run_all)
cli.add_command(expire)
cli.add_command(metrics)
cli.add_command(check)
cli.add_command(usage)
cli.add_command(runbook)
cli.add_command(storage)
cli.add_command(config)


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL.

    \b
    bash: eval "$(backup-engine completion bash)"   (in ~/.bashrc)
    zsh:  eval "$(backup-engine completion zsh)"    (in ~/.zshrc)
    fish: backup-engine completion fish > ~/.config/fish/completions/backup-engine.fish
    """
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)
    assert completer is not None  # the three choices are click's own
    click.echo(completer(cli, {}, "backup-engine", "_BACKUP_ENGINE_COMPLETE").source())


def _fail(message: str, code: int) -> None:
    # Credentials never reach the terminal or a log, whichever library put them in a message.
    click.echo(logs.error_line(message), err=True)
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="backup-engine", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        _fail("interrupted", EXIT_INTERRUPTED)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "backup-engine"
        _fail(f"{exc.format_message()} (see: {where} --help)", EXIT_USAGE)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except BackupEngineError as exc:
        if debug:
            traceback.print_exc()
        _fail(exc.one_line(), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", EXIT_INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - a bug: still one line, the traceback on request
        if debug:
            traceback.print_exc()
        _fail(
            f"internal error: {type(exc).__name__}: {exc} (rerun with --debug and report it)",
            EXIT_INTERNAL,
        )
    sys.exit(0)
