"""`backup-engine config`: every option, as declared once in options.py."""

from __future__ import annotations

import re

import click

from backup_engine.commands.context import CliContext
from backup_engine.urls import redact


@click.group()
def config() -> None:
    """The configuration options: an example file, the table of every option."""


@config.command()
def example() -> None:
    """Print an example backup-engine.toml with every option."""
    from backup_engine.options_doc import example_file

    click.echo(example_file(), nl=False)


@config.command()
def options() -> None:
    """Print every option with its default, environment variables and meaning (Markdown)."""
    from backup_engine.options_doc import options_table

    click.echo(options_table(), nl=False)


@config.command()
@click.option("--json", "json_output", is_flag=True, help="Print JSON for machines.")
@click.pass_obj
def show(obj: CliContext, json_output: bool) -> None:
    """Every option's effective value and where it came from (default, the config file, an
    environment variable, the command line). Passwords in URLs and DSNs are masked."""
    from dataclasses import asdict

    from backup_engine.commands.output import emit_json, emit_table
    from backup_engine.options import OPTIONS

    settings = obj.settings()
    rows = []
    for option in OPTIONS:
        section = asdict(getattr(settings, option.section))
        value = section[option.name]
        shown = ", ".join(value) if isinstance(value, tuple) else value
        key = f"{option.section}.{option.name}"
        rows.append((key, mask("" if shown is None else str(shown)), settings.origins[key]))
    if json_output:
        emit_json([{"option": k, "value": v, "from": f} for k, v, f in rows])
        return
    emit_table(("OPTION", "VALUE", "FROM"), rows)


_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def mask(value: str) -> str:
    """`postgresql://u:secret@h` -> `postgresql://***@h`; `password=secret` -> `password=***`."""
    return _PASSWORD.sub(r"\1***", redact(value))
