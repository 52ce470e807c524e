"""`backup-engine config`: every option, as declared once in options.py."""

from __future__ import annotations

import click


@click.group()
def config() -> None:
    """The configuration options: an example file, the table of every option."""


@config.command()
def example() -> None:
    """Print an example backup-engine.toml with every option."""
    from backup_engine.options import example_file

    click.echo(example_file(), nl=False)


@config.command()
def options() -> None:
    """Print every option with its default, environment variables and meaning (Markdown)."""
    from backup_engine.options import options_table

    click.echo(options_table(), nl=False)
