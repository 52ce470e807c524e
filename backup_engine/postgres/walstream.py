"""`wal-stream`: WAL streaming with pg_receivewal, for servers whose archive_command cannot be
changed, and for a lower RPO than archive_timeout gives.

pg_receivewal holds a replication slot (so the server keeps WAL we have not received) and
writes segments into a local spool directory, flushing every record (`--synchronous`). This
loop ships each completed segment to the repository exactly like wal-push (then deletes it from
the spool) and, every `partial_interval`, uploads the segment still being written as
`<name>.partial`. wal-fetch serves that partial copy when the complete segment never arrived,
so the repository's RPO is bounded by `partial_interval` instead of by segment size or
archive_timeout.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from backup_engine.codecs import Codec
from backup_engine.errors import CommandFailed
from backup_engine.postgres.binaries import find_pg_binaries
from backup_engine.postgres.wal import (
    HISTORY,
    META_ARCHIVED_AT,
    META_SHA256,
    META_SIZE,
    SEGMENT,
    wal_key,
    wal_push,
)
from backup_engine.process import StreamingProcess, run, spawn
from backup_engine.storage.base import Storage

SCAN_INTERVAL_S = 0.2


@dataclass
class StreamStats:
    segments_shipped: int = 0
    partial_uploads: int = 0
    last_shipped: str | None = None
    errors: list[str] = field(default_factory=list)


class WalStreamer:
    def __init__(
        self,
        storage: Storage,
        *,
        dsn: str,
        slot: str,
        spool_dir: Path,
        codec: Codec,
        partial_interval: float = 10.0,
        bindir: str | None = None,
    ) -> None:
        self.storage = storage
        self.dsn = dsn
        self.slot = slot
        self.spool_dir = spool_dir
        self.codec = codec
        self.partial_interval = partial_interval
        self.binaries = find_pg_binaries(bindir)
        self.stats = StreamStats()
        self._receiver: StreamingProcess | None = None
        self._last_partial: tuple[str, int] | None = None  # (name, mtime_ns) last uploaded
        self._last_partial_at = 0.0

    def create_slot(self) -> None:
        """Create the physical replication slot if it does not exist yet."""
        run([
            self.binaries.path("pg_receivewal"), f"--dbname={self.dsn}", f"--slot={self.slot}",
            "--create-slot", "--if-not-exists", "--no-password",
        ])  # fmt: skip

    def start(self) -> None:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self._receiver = spawn([
            self.binaries.path("pg_receivewal"), f"--dbname={self.dsn}", f"--slot={self.slot}",
            f"--directory={self.spool_dir}", "--synchronous", "--no-loop", "--no-password",
        ])  # fmt: skip

    def receiving(self) -> bool:
        return self._receiver is not None and self._receiver.poll() is None

    def ship_once(self, *, final: bool = False) -> None:
        """Upload what is new in the spool: completed files always, the open segment when due."""
        for path in sorted(self.spool_dir.iterdir()):
            if SEGMENT.match(path.name) or HISTORY.match(path.name):
                wal_push(self.storage, path, self.codec)
                path.unlink()
                self._forget_partial(path.name)
                self.stats.segments_shipped += 1
                self.stats.last_shipped = path.name
        due = time.monotonic() - self._last_partial_at >= self.partial_interval
        if final or due:
            self._ship_partial()

    def _ship_partial(self) -> None:
        partials = sorted(self.spool_dir.glob("*.partial"))
        if not partials:
            return
        path = partials[-1]
        stamp = (path.name, path.stat().st_mtime_ns)
        if stamp == self._last_partial:
            return
        key = wal_key(path.name, self.codec)
        # pg_receivewal keeps writing this file: take one copy (a segment at most, 16 MB by
        # default) so the sha256 recorded describes exactly the bytes stored.
        data = path.read_bytes()
        metadata = {
            META_SHA256: hashlib.sha256(data).hexdigest(),
            META_SIZE: str(len(data)),
            META_ARCHIVED_AT: datetime.now(UTC).isoformat(),
        }
        with self.storage.writer(key, metadata=metadata) as out:  # replaced as it grows
            compressor = self.codec.compressor()
            out.write(compressor.compress(data))
            out.write(compressor.flush())
            out.commit()
        self._last_partial = stamp
        self._last_partial_at = time.monotonic()
        self.stats.partial_uploads += 1

    def _forget_partial(self, segment: str) -> None:
        """A completed segment supersedes its partial copy in the repository."""
        self.storage.delete(wal_key(f"{segment}.partial", self.codec))

    def run(self, stop: threading.Event) -> StreamStats:
        """Stream until `stop` is set or the server goes away, then ship what is left."""
        self.start()
        try:
            while not stop.is_set() and self.receiving():
                self.ship_once()
                stop.wait(SCAN_INTERVAL_S)
        finally:
            self.stop_receiver()
            self.ship_once(final=True)
        return self.stats

    def stop_receiver(self) -> None:
        if self._receiver is None:
            return
        if self._receiver.poll() is None:
            self._receiver.terminate()
        with contextlib.suppress(CommandFailed):
            self._receiver.wait(check=False)
        self._receiver = None


class BackgroundStream:
    """A WalStreamer on its own thread, as drills and `wal-stream` run it."""

    def __init__(self, streamer: WalStreamer) -> None:
        self.streamer = streamer
        self._stop = threading.Event()
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="wal-stream", daemon=True)

    def _run(self) -> None:
        try:
            self.streamer.run(self._stop)
        except Exception as exc:  # noqa: BLE001 - a thread hands its failure to stop()
            self._error = exc

    def start(self) -> BackgroundStream:
        self._thread.start()
        return self

    def stop(self) -> StreamStats:
        """Stop receiving, ship what is left, and raise what went wrong on the way."""
        self._stop.set()
        self._thread.join(timeout=120)
        if self._error is not None:
            raise self._error
        return self.streamer.stats
