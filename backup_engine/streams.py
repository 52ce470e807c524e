"""The minimal stream protocol our pipeline stages share: something with read(size)."""

from __future__ import annotations

import queue
import threading
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


class Chunks(Protocol):
    """A stream read in views: what `read` returns stays valid until the next call."""

    def read(self, size: int = -1, /) -> bytes | memoryview: ...


class ReadAhead:
    """Reads `raw` in a second thread, up to `depth` chunks ahead of the consumer.

    A restore decompresses, hashes and downloads in that thread while the consumer creates and
    writes files: zstd, sha256, sockets and file reads all release the GIL, so the two halves
    use both cores. `read` returns views of the chunks (no copy), valid until the next call.
    Use it as a context manager: leaving stops and joins the thread, so the stream is the
    caller's again (e.g. to drain and check it) and no read outlives the restore.
    """

    def __init__(self, raw: Readable, *, chunk: int = 1 << 20, depth: int = 4) -> None:
        self._raw = raw
        self._free: queue.SimpleQueue[bytearray | None] = queue.SimpleQueue()
        self._full: queue.SimpleQueue[tuple[bytearray, int] | BaseException] = queue.SimpleQueue()
        for _ in range(depth):
            self._free.put(bytearray(chunk))
        self._current: bytearray | None = None
        self._pos = self._end = 0
        self._done = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._fill, name="read-ahead", daemon=True)

    def __enter__(self) -> ReadAhead:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._free.put(None)  # wakes the thread if it waits for a buffer; it then stops
        self._thread.join()

    def _fill(self) -> None:
        readinto = getattr(self._raw, "readinto", None)
        try:
            while (buffer := self._free.get()) is not None:
                if readinto is not None:
                    n = readinto(buffer)
                else:
                    data = self._raw.read(len(buffer))
                    n = len(data)
                    buffer[:n] = data
                self._full.put((buffer, n))
                if not n:
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            self._full.put(exc)

    def read(self, size: int = -1, /) -> memoryview:
        """Up to `size` bytes of what comes next (fewer at a chunk's end); empty at the end."""
        if self._pos == self._end:
            if self._error is not None:
                raise self._error
            if self._done:
                return memoryview(b"")
            if self._current is not None:
                self._free.put(self._current)
                self._current = None
            item = self._full.get()
            if isinstance(item, BaseException):
                self._error = item
                raise item
            self._current, self._end = item
            self._pos = 0
            if not self._end:
                self._done = True
                return memoryview(b"")
        assert self._current is not None
        stop = self._end if size < 0 else min(self._end, self._pos + size)
        view = memoryview(self._current)[self._pos : stop]
        self._pos = stop
        return view
