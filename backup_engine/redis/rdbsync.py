"""Fetching an RDB snapshot over the network, the way a replica (or `redis-cli --rdb`) does.

We speak just enough of the replication protocol: announce that we understand the diskless
`$EOF:<mark>` framing and want only the RDB (`REPLCONF rdb-only`, Redis >= 7), send SYNC, and
stream the payload as it arrives. No `BGSAVE; sleep 10; cp dump.rdb` (the seed plan's script):
the server produces the snapshot for us and tells us exactly where it ends.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Iterator

from backup_engine.errors import BackupEngineError, ServerUnreachable
from backup_engine.redis.target import RedisTarget

EOF_MARK_LEN = 40
CHUNK = 1 << 20


class RdbTransferFailed(BackupEngineError):
    """The server refused or broke off the snapshot transfer."""


def _encode(*args: str) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class _Connection:
    def __init__(self, target: RedisTarget, timeout: float) -> None:
        try:
            raw = socket.create_connection((target.host, target.port), timeout=timeout)
        except OSError as exc:
            raise ServerUnreachable(
                f"cannot connect to Redis at {target.describe()}: {exc.strerror or exc}"
            ) from None
        if target.tls:
            context = ssl.create_default_context(cafile=target.ca_file)
            raw = context.wrap_socket(raw, server_hostname=target.host)
        self.sock = raw
        self.reader = raw.makefile("rb")

    def command(self, *args: str) -> bytes:
        self.sock.sendall(_encode(*args))
        line = self.reader.readline()
        if line.startswith(b"-"):
            raise RdbTransferFailed(f"Redis answered {args[0]} with: {line[1:].decode().strip()}")
        return line

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def stream_rdb(target: RedisTarget, *, timeout: float = 300) -> Iterator[bytes]:
    """Yield the server's RDB snapshot in chunks, nothing more (the EOF mark is stripped)."""
    conn = _Connection(target, timeout)
    try:
        if target.password is not None:
            user = [target.username] if target.username else []
            conn.command("AUTH", *user, target.password)
        conn.command("REPLCONF", "capa", "eof")
        with contextlib.suppress(RdbTransferFailed):  # Redis < 7 does not know rdb-only
            conn.command("REPLCONF", "rdb-only", "1")
        conn.sock.sendall(_encode("SYNC"))
        header = conn.reader.readline()
        while header == b"\n":  # keepalives while the server prepares the snapshot
            header = conn.reader.readline()
        if header.startswith(b"-"):
            raise RdbTransferFailed(f"Redis refused SYNC: {header[1:].decode().strip()}")
        if not header.startswith(b"$"):
            raise RdbTransferFailed(f"unexpected answer to SYNC: {header[:60]!r}")
        if header.startswith(b"$EOF:"):
            yield from _until_mark(conn, header[5 : 5 + EOF_MARK_LEN])
        else:
            yield from _exactly(conn, int(header[1:].strip()))
    finally:
        conn.close()


def _exactly(conn: _Connection, length: int) -> Iterator[bytes]:
    remaining = length
    while remaining:
        chunk = conn.reader.read(min(CHUNK, remaining))
        if not chunk:
            raise RdbTransferFailed(f"connection closed with {remaining} bytes of the RDB missing")
        remaining -= len(chunk)
        yield chunk


def _until_mark(conn: _Connection, mark: bytes) -> Iterator[bytes]:
    """Diskless framing: the payload ends with the 40-byte mark announced in the header."""
    held = b""  # the last bytes seen, which may be (the start of) the mark
    while True:
        chunk = conn.reader.read1(CHUNK)
        if not chunk:
            raise RdbTransferFailed("connection closed before the end of the RDB")
        data = held + chunk
        if data.endswith(mark):
            if len(data) > EOF_MARK_LEN:
                yield data[:-EOF_MARK_LEN]
            return
        if len(data) > EOF_MARK_LEN:
            yield data[:-EOF_MARK_LEN]
        held = data[-EOF_MARK_LEN:]
