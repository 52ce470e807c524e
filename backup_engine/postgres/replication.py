"""Our own BASE_BACKUP client: the replication protocol spoken through psycopg's libpq layer.

pg_basebackup cannot write more than one tablespace to a pipe, nor compress on the server and
keep its manifest apart, and every byte crossed three processes. Here the server's COPY stream
arrives in this process: one archive per tablespace, each compressed on the server if asked,
and the backup_manifest after them. (`cursor.copy()` refuses BASE_BACKUP, so the low-level
`psycopg.pq` interface is used: `send_query`, `get_result`, `get_copy_data`.)

PostgreSQL 15 and later send one COPY stream of typed messages:
  n  a new archive: its name (base.tar, <oid>.tar, with .zst when compressed) and tablespace path
  d  data of the current archive, or of the manifest after `m`
  p  progress: the uncompressed bytes sent so far (always sent at the end of each archive)
  m  the backup_manifest follows
13 and 14 send a COPY per tablespace without those messages; they keep pg_basebackup
(basebackup_pipe.py), which serves a single tablespace.
"""

from __future__ import annotations

import select
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
from psycopg import pq

from backup_engine.errors import CommandFailed
from backup_engine.postgres.connection import connect
from backup_engine.postgres.lsn import parse_lsn
from backup_engine.streams import Readable

MIN_MAJOR = 15  # the typed COPY stream above
MAX_RATE_KB = (32, 1_048_576)  # what BASE_BACKUP's MAX_RATE accepts, in kB/s


@dataclass(frozen=True)
class SystemIdentity:
    system_identifier: str
    timeline: int
    lsn: int


@dataclass(frozen=True)
class BackupRequest:
    label: str
    checkpoint: str = "fast"  # or "spread": PostgreSQL's own pace, minutes on a busy server
    compression: str = ""  # "zstd": the server compresses; "": plain tar
    level: int = 1
    workers: int = 0  # zstd worker threads on the server (0: in the backend process)
    max_rate_kb: int = 0  # 0: unthrottled
    incremental: bool = False  # PostgreSQL 17: after upload_manifest()
    progress: bool = False  # running progress messages (the server sizes the data first)

    def command(self) -> bytes:
        label = self.label.replace("'", "''")
        options = [
            f"LABEL '{label}'",
            f"CHECKPOINT '{self.checkpoint}'",
            "WAL true",  # the WAL that makes the backup consistent, inside base.tar
            # ... so never wait for the archiver, as pg_basebackup -X fetch does not: with a
            # stuck archive_command the backup would hang (BackupWaitWalArchive) for ever
            "WAIT false",
            "MANIFEST 'yes'",
            "MANIFEST_CHECKSUMS 'CRC32C'",
        ]
        if self.compression:
            detail = f"level={self.level}" + (f",workers={self.workers}" if self.workers else "")
            options += [f"COMPRESSION '{self.compression}'", f"COMPRESSION_DETAIL '{detail}'"]
        if self.max_rate_kb:
            options.append(f"MAX_RATE {self.max_rate_kb}")
        if self.incremental:
            options.append("INCREMENTAL")
        if self.progress:
            options.append("PROGRESS true")
        return f"BASE_BACKUP ({', '.join(options)})".encode()


@dataclass(frozen=True)
class Started:
    lsn: int
    timeline: int


@dataclass(frozen=True)
class TablespaceRow:
    oid: int | None  # None: the main data directory
    location: str | None


@dataclass(frozen=True)
class NewArchive:
    name: str  # base.tar, <oid>.tar, with the server's compression suffix
    location: str  # the tablespace's path on the server; "" for base


@dataclass(frozen=True)
class Progress:
    done: int  # uncompressed bytes sent so far, every archive included


@dataclass(frozen=True)
class ManifestFollows:
    pass


@dataclass(frozen=True)
class Ended:
    lsn: int
    timeline: int


Event = Started | TablespaceRow | NewArchive | Progress | ManifestFollows | Ended


class ReplicationConnection:
    """A physical replication connection (no database): IDENTIFY_SYSTEM, BASE_BACKUP."""

    def __init__(self, dsn: str) -> None:
        self._conn = connect(dsn, replication=True)
        self._pg = self._conn.pgconn

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ReplicationConnection:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _fail(self, what: str, message: bytes | str | None = None) -> CommandFailed:
        text = message if message is not None else self._pg.error_message
        if isinstance(text, bytes):
            text = text.decode(errors="replace")
        line = " ".join(text.split()) or "the connection was lost"
        return CommandFailed(f"{what} failed: {line}")

    def _rows(self, result: pq.abc.PGresult) -> list[list[bytes | None]]:
        return [
            [result.get_value(row, col) for col in range(result.nfields)]
            for row in range(result.ntuples)
        ]

    def identify_system(self) -> SystemIdentity:
        self._pg.send_query(b"IDENTIFY_SYSTEM")
        rows: list[list[bytes | None]] = []
        while (result := self._pg.get_result()) is not None:
            if result.status != pq.ExecStatus.TUPLES_OK:
                raise self._fail("IDENTIFY_SYSTEM", result.error_message)
            rows = self._rows(result)
        if not rows or rows[0][0] is None or rows[0][1] is None or rows[0][2] is None:
            raise CommandFailed("IDENTIFY_SYSTEM answered nothing")
        system, timeline, lsn = rows[0][0], rows[0][1], rows[0][2]
        return SystemIdentity(system.decode(), int(timeline), parse_lsn(lsn.decode()))

    def upload_manifest(self, manifest: Readable) -> None:
        """PostgreSQL 17: the parent's backup_manifest, before an INCREMENTAL BASE_BACKUP."""
        self._pg.send_query(b"UPLOAD_MANIFEST")
        result = self._pg.get_result()
        if result is None or result.status != pq.ExecStatus.COPY_IN:
            raise self._fail("UPLOAD_MANIFEST", None if result is None else result.error_message)
        while chunk := manifest.read(1 << 20):
            if self._pg.put_copy_data(bytes(chunk)) != 1:
                raise self._fail("UPLOAD_MANIFEST")
        if self._pg.put_copy_end() != 1:
            raise self._fail("UPLOAD_MANIFEST")
        while (result := self._pg.get_result()) is not None:
            if result.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
                raise self._fail("UPLOAD_MANIFEST", result.error_message)

    def base_backup(self, request: BackupRequest) -> Iterator[Event | memoryview]:
        """The backup as events, and the data of the current archive (or of the manifest) as
        memoryviews valid until the next item is asked for: write them before going on."""
        self._pg.send_query(request.command())
        results = 0
        while (result := self._pg.get_result()) is not None:
            status = result.status
            if status == pq.ExecStatus.TUPLES_OK:
                rows = self._rows(result)
                results += 1
                if results == 1:
                    yield Started(*_position(rows))
                elif results == 2:
                    for oid, location, *_ in rows:
                        yield TablespaceRow(
                            int(oid) if oid is not None else None,
                            location.decode() if location is not None else None,
                        )
                else:
                    yield Ended(*_position(rows))
            elif status == pq.ExecStatus.COPY_OUT:
                yield from self._copy_stream()
            elif status != pq.ExecStatus.COMMAND_OK:
                raise self._fail("BASE_BACKUP", result.error_message)

    def _copy_stream(self) -> Iterator[Event | memoryview]:
        while True:
            size, data = self._next_copy_data()
            if size == -1:
                return
            if size == -2:
                raise self._fail("BASE_BACKUP")
            kind = data[0]
            if kind == 0x64:  # d
                yield data[1:]
            elif kind == 0x70:  # p
                yield Progress(int.from_bytes(data[1:9], "big"))
            elif kind == 0x6E:  # n
                name, location = bytes(data[1:]).split(b"\0")[:2]
                yield NewArchive(name.decode(), location.decode())
            elif kind == 0x6D:  # m
                yield ManifestFollows()
            else:
                raise CommandFailed(f"BASE_BACKUP sent an unknown message {chr(kind)!r}")

    def _next_copy_data(self) -> tuple[int, memoryview]:
        # Wait on the socket ourselves: a blocking PQgetCopyData would hold the GIL while the
        # server works, and our compressor and upload threads would wait with it.
        try:
            while True:
                size, data = self._pg.get_copy_data(1)
                if size != 0:
                    return size, memoryview(data)
                select.select([self._pg.socket], [], [])
                self._pg.consume_input()
        except psycopg.Error as exc:
            raise self._fail("BASE_BACKUP", str(exc)) from None


def _position(rows: list[list[bytes | None]]) -> tuple[int, int]:
    if not rows or rows[0][0] is None or rows[0][1] is None:
        raise CommandFailed("BASE_BACKUP did not say where the backup starts or ends")
    return parse_lsn(rows[0][0].decode()), int(rows[0][1])


def open_replication(dsn: str) -> ReplicationConnection:
    try:
        return ReplicationConnection(dsn)
    except psycopg.Error as exc:  # connect() words the usual ones; anything else, in one line
        raise CommandFailed(f"cannot open a replication connection: {exc}") from None
