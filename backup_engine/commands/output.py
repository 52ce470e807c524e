"""Printing results: JSON for machines, short aligned text for people."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import click

from backup_engine import logs
from backup_engine.snapshots import Catalog

json_option = click.option("--json", "json_output", is_flag=True, help="Print JSON for machines.")
progress_option = click.option("--no-progress", is_flag=True, help="Do not draw a progress bar.")


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def human_bytes(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def emit_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    for line in (headers, *rows):
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def show_catalog(
    catalog: Catalog[Any],
    *,
    repository: str,
    what: str,
    headers: Sequence[str],
    row: Callable[[Any], Sequence[str]],
    json_output: bool,
    extra: dict[str, Any] | None = None,
    as_dict: Callable[[Any], dict[str, Any]] = lambda m: m.to_dict(),
    pins: Mapping[str, str] | None = None,
) -> None:
    """A `list` command's output: complete backups as a table or JSON, incomplete ones named;
    with `pins`, a PINNED column (the reason) and `pinned` in the JSON."""
    if pins is not None:
        headers = (*headers, "PINNED")
        plain_row, plain_dict = row, as_dict
        row = lambda m: (*plain_row(m), pins.get(m.backup_id, ""))  # noqa: E731
        as_dict = lambda m: {**plain_dict(m), "pinned": pins.get(m.backup_id)}  # noqa: E731
    if json_output:
        emit_json(
            {
                "repository": repository,
                "backups": [as_dict(m) for m in catalog.backups],
                "incomplete": [
                    {"backup_id": i.backup_id, "reason": i.reason} for i in catalog.incomplete
                ],
                "unreadable": [
                    {"backup_id": i.backup_id, "reason": i.reason} for i in catalog.unreadable
                ],
                "foreign": list(catalog.foreign),
                **(extra or {}),
            }
        )
        return
    if not catalog.backups:
        click.echo(f"no complete {what} in {repository}")
    else:
        emit_table(headers, [row(m) for m in catalog.backups])
    for item in catalog.incomplete:
        logs.warning(f"not restorable: {item.backup_id} ({item.reason})", backup=item.backup_id)
    for item in catalog.unreadable:
        logs.warning(f"UNREADABLE manifest: {item.backup_id} ({item.reason})",
                     backup=item.backup_id)  # fmt: skip
    if catalog.foreign:
        logs.warning(f"ignored {len(catalog.foreign)} object(s) this tool never writes, e.g. "
                     f"{catalog.foreign[0]!r}: not a backup")  # fmt: skip


def stopped(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")
