"""S3 downloads are one streamed GET: a connection cut mid-object (a real TCP proxy in front of
the embedded server closes it) resumes from the byte reached, and an object replaced between
the cut and the resume is refused, never spliced."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import socketserver
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from backup_engine.drill.embedded_s3 import EmbeddedS3
from backup_engine.errors import CorruptObject
from backup_engine.storage import S3Storage

MiB = 1 << 20


class CuttingProxy:
    """Forwards TCP to `upstream`; the first response stream to pass `cut_after` bytes is cut
    (both sockets closed) `cuts` times, and `on_cut` runs before the client sees it."""

    def __init__(self, upstream: tuple[str, int], cut_after: int, cuts: int = 1) -> None:
        self.upstream, self.cut_after, self.left = upstream, cut_after, cuts
        self.on_cut: Callable[[], None] = lambda: None
        self.cut = 0
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy.pump(self.request)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def pump(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self.upstream)

        def forward() -> None:
            try:
                while data := client.recv(65536):
                    upstream.sendall(data)
            except OSError:
                pass

        threading.Thread(target=forward, daemon=True).start()
        sent = 0
        try:
            while data := upstream.recv(65536):
                if self.left and sent + len(data) > self.cut_after:
                    self.left -= 1
                    self.cut += 1
                    self.on_cut()
                    client.sendall(data[: max(0, self.cut_after - sent)])
                    break
                client.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            for end in (client, upstream):  # shutdown: a recv blocked in `forward` holds the fd
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()

    def __enter__(self) -> CuttingProxy:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stores(embedded_s3: EmbeddedS3) -> Iterator[tuple[S3Storage, S3Storage, CuttingProxy]]:
    """(direct store, the same prefix through a proxy that cuts after 3 MiB, the proxy)."""
    prefix = f"resume-{uuid.uuid4().hex[:8]}"
    host, port = embedded_s3.endpoint_url.removeprefix("http://").split(":")
    with CuttingProxy((host, int(port)), cut_after=3 * MiB) as proxy:
        direct = S3Storage(embedded_s3.bucket, prefix, embedded_s3.options())
        options = replace(embedded_s3.options(), endpoint_url=proxy.url)
        yield direct, S3Storage(embedded_s3.bucket, prefix, options), proxy


def _read_all(store: S3Storage, key: str) -> bytes:
    with store.open_reader(key) as reader:
        parts = []
        while part := reader.read(MiB):
            parts.append(part)
    return b"".join(parts)


def test_a_download_cut_mid_object_resumes_where_it_stopped(
    stores: tuple[S3Storage, S3Storage, CuttingProxy],
) -> None:
    direct, proxied, proxy = stores
    data = os.urandom(12 * MiB)
    direct.put_bytes("big", data)
    proxy.left = 3  # three cuts in one download
    got = _read_all(proxied, "big")
    assert proxy.cut == 3
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


def test_an_object_replaced_before_the_resume_is_refused(
    stores: tuple[S3Storage, S3Storage, CuttingProxy],
) -> None:
    direct, proxied, proxy = stores
    direct.put_bytes("big", os.urandom(8 * MiB))

    def replace_it() -> None:
        direct.put_bytes("big", os.urandom(8 * MiB))

    proxy.on_cut = replace_it
    with pytest.raises(CorruptObject, match="replaced while it was being read"):
        _read_all(proxied, "big")
    assert proxy.cut == 1
