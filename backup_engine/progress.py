"""Progress reporting for long work: a rich bar on a terminal, nothing otherwise.

Engine functions take a `Progress` and never print themselves; the CLI decides whether a person
is watching (stderr is a terminal and --json was not asked for).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from backup_engine.streams import Advancing

ProgressTask = Advancing


class _Silent:
    def advance(self, amount: int) -> None:
        pass


class Progress:
    """The silent default."""

    shown = False  # a person watches: worth asking servers for running figures

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[ProgressTask]:
        yield _Silent()


class _RichTask:
    def __init__(self, bar: Any, task_id: Any) -> None:
        self._bar = bar
        self._task_id = task_id

    def advance(self, amount: int) -> None:
        self._bar.update(self._task_id, advance=amount)


class RichProgress(Progress):
    """Bytes done, rate and time left, drawn on stderr."""

    shown = True

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[ProgressTask]:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as Bar

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
        )
        with Bar(*columns, console=Console(stderr=True), transient=False) as bar:
            task_id = bar.add_task(description, total=total)
            yield _RichTask(bar, task_id)


def make_progress(*, enabled: bool, stream: IO[str] | None = None) -> Progress:
    stream = stream or sys.stderr
    return RichProgress() if enabled and stream.isatty() else Progress()
