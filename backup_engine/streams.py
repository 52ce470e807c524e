"""The minimal stream protocol our pipeline stages share: something with read(size)."""

from __future__ import annotations

from typing import Protocol


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class Advancing(Protocol):
    def advance(self, amount: int) -> None: ...


class CountingReader:
    """Passes reads through, reporting how many bytes went by (for progress bars)."""

    def __init__(self, raw: Readable, task: Advancing) -> None:
        self._raw = raw
        self._task = task

    def read(self, size: int = -1, /) -> bytes:
        data = self._raw.read(size)
        self._task.advance(len(data))
        return data

    def readable(self) -> bool:
        return True
